package untar

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
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
