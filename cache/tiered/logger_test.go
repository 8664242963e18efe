package tiered

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/local"
)

// localRemote is a local cache standing in for a remote one.
type localRemote struct{ *local.Cache }

func (r localRemote) Actions() cache.ActionCache { return r.Cache.Actions() }
func (r localRemote) Name() string               { return "file://remote" }

// The cache's decisions go to the injected logger, not to slog.Default.
func TestWithLogger(t *testing.T) {
	remote := localRemote{openLocal(t)}
	out := put(t, t.Context(), remote, "rootfs from the remote")
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := New(openLocal(t), []Remote{remote}, nil, WithLogger(log))
	if got, err := readAll(t.Context(), c, out.Digest); err != nil || got != "rootfs from the remote" {
		t.Fatalf("Open() = %q, %v; want the remote's blob", got, err)
	}
	if s := buf.String(); !strings.Contains(s, "downloaded blob") || !strings.Contains(s, string(out.Digest)) {
		t.Errorf("log = %q, want a \"downloaded blob\" line with digest %s", s, out.Digest)
	}
}
