package main

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imsbuild/imsbuild/internal/testutil"
)

// TestBusyboxReproducible builds examples/busybox twice from cold, in two
// directories with separate caches, with another umask, hostname, time
// zone and time of day: the published trees (artifacts, manifests with
// their created time, records, SBOMs; so the image ids too) are byte for
// byte the same.
func TestBusyboxReproducible(t *testing.T) {
	testutil.RequireTool(t, "unshare")
	a, b := example(t), example(t)
	first := imsbuildEnv(t, a, []string{"TZ=UTC"}, "build", ".")
	if first.code != 0 {
		t.Fatalf("first build exit %d\n%s\n%s", first.code, first.stdout, first.stderr)
	}
	time.Sleep(1100 * time.Millisecond) // another second for every wall-clock time
	// unshare --uts: a hostname of its own; umask 077 for imsbuild only
	// (make-root.sh made the root under the same umask in both).
	cmd := exec.CommandContext(t.Context(), "unshare", "--uts", "/bin/sh", "-c",
		`hostname repro-other-host && umask 077 && exec "$0" build .`, binary)
	cmd.Dir = b
	cmd.Env = append(os.Environ(), "TZ=Asia/Tokyo")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("second build: %v\n%s", err, out)
	}
	ta, tb := publishedTree(t, filepath.Join(a, "out")), publishedTree(t, filepath.Join(b, "out"))
	if len(ta) == 0 {
		t.Fatal("nothing published")
	}
	if d := cmp.Diff(ta, tb); d != "" {
		t.Errorf("published trees differ (-first +second):\n%s", d)
	}
	ids := 0
	for p := range ta {
		if strings.HasPrefix(p, "boot-images/") && strings.HasSuffix(p, "/manifest.json") {
			ids++
		}
	}
	if ids != 2 {
		t.Errorf("%d images published, want 2: %v", ids, ta)
	}
}

// publishedTree returns every entry below dir as path → type and sha256.
// Modes are left out: the published files' follow the user's umask, as
// cp's do; the image's own modes are inside the rootfs, which is hashed.
func publishedTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	tree := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		v := d.Type().String()
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			v += " " + hex.EncodeToString(sum[:])
		}
		tree[filepath.ToSlash(rel)] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}
