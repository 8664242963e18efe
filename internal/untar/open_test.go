package untar

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/imsbuild/imsbuild/internal/testutil"
)

func TestOpen(t *testing.T) {
	plain := archive(t, file("etc/hostname", "node\n", 0o644))
	gz := func() []byte {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write(plain)
		w.Close()
		return b.Bytes()
	}()
	zst := func() []byte {
		var b bytes.Buffer
		w, err := zstd.NewWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(plain)
		w.Close()
		return b.Bytes()
	}()
	tests := []struct {
		name    string
		data    []byte
		wantErr error
	}{
		{"root.tar", plain, nil},
		{"root.tgz", gz, nil},
		{"root.tar.zst", zst, nil},
		{"junk", []byte("hsqs not a tar at all"), ErrFormat},
		{"empty", nil, ErrFormat},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), tc.name)
			if err := os.WriteFile(p, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			rc, err := Open(p)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Open() = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("Open() read %d bytes, %v; want the plain tar (%d bytes)", len(got), err, len(plain))
			}
			if err := rc.Close(); err != nil {
				t.Errorf("Close() = %v", err)
			}
		})
	}
}

// An archive made by the zstd CLI in its largest long mode (a 2 GiB
// window, as the frame header says when the input size is unknown) opens.
func TestOpenZstdLong31(t *testing.T) {
	zstdBin := testutil.RequireTool(t, "zstd")
	plain := archive(t, file("etc/hostname", "node\n", 0o644), file("usr/lib/big", strings.Repeat("abcdefgh", 1<<14), 0o644))
	cmd := exec.CommandContext(t.Context(), zstdBin, "--long=31", "-q", "-c")
	cmd.Stdin = bytes.NewReader(plain) // a pipe: the CLI keeps the full window
	zst, err := cmd.Output()
	if err != nil {
		t.Fatalf("zstd --long=31: %v", err)
	}
	var fh zstd.Header
	if err := fh.Decode(zst); err != nil || fh.WindowSize != 1<<31 {
		t.Fatalf("zstd --long=31 wrote a window of %d (%v), want 2 GiB", fh.WindowSize, err)
	}
	p := filepath.Join(t.TempDir(), "root.tar.zst")
	if err := os.WriteFile(p, zst, 0o644); err != nil {
		t.Fatal(err)
	}
	rc, err := Open(p)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Open() read %d bytes, %v; want the plain tar (%d bytes)", len(got), err, len(plain))
	}
}
