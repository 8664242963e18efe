package remoteblob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/internal/verify"
)

// fake is an in-memory remote. Blobs in untrusted are reported as present
// but not trusted, as S3 reports objects without sha256 metadata.
type fake struct {
	mu        sync.Mutex
	blobs     map[cache.Digest][]byte
	untrusted map[cache.Digest]bool
	uploads   int
	headErr   error
}

func newFake() *fake {
	return &fake{blobs: map[cache.Digest][]byte{}, untrusted: map[cache.Digest]bool{}}
}

func (f *fake) head(ctx context.Context, d cache.Digest) (int64, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.headErr != nil {
		return 0, false, f.headErr
	}
	b, ok := f.blobs[d]
	if !ok {
		return 0, false, fmt.Errorf("head fake: %w", cache.ErrNotFound)
	}
	return int64(len(b)), !f.untrusted[d], nil
}

// upload commits only content that read to EOF without error.
func (f *fake) upload(ctx context.Context, r io.Reader, d cache.Digest, size int64) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("upload fake: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.uploads++
	f.blobs[d] = b
	delete(f.untrusted, d)
	return nil
}

func (f *fake) get(ctx context.Context, d cache.Digest) (io.ReadCloser, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.blobs[d]
	if !ok {
		return nil, 0, fmt.Errorf("get fake: %w", cache.ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
}

func newStore(t *testing.T) (*Store, *fake, string) {
	f := newFake()
	tmp := t.TempDir()
	return New(Remote{Head: f.head, Upload: f.upload, Get: f.get}, tmp, "spool-*"), f, tmp
}

func digestOf(s string) cache.Digest {
	d, _, _ := verify.HashCopy(context.Background(), nil, strings.NewReader(s))
	return d
}

func TestPut(t *testing.T) {
	const content = "rootfs bytes"
	d := digestOf(content)
	tests := []struct {
		name        string
		stored      string // "" = absent
		untrusted   bool
		put         string
		want        cache.Digest
		wantUploads int
		wantErr     error
	}{
		{name: "new", put: content, want: d, wantUploads: 1},
		{name: "new without digest", put: content, wantUploads: 1},
		{name: "present", stored: content, put: content, want: d, wantUploads: 0},
		{name: "present, wrong content", stored: content, put: "rootfs bytez", want: d, wantErr: cache.ErrCorrupt},
		{name: "present, other size", stored: content + "!", put: content, wantUploads: 1}, // the spooled size is known
		{name: "present, size unknown, other size", stored: content + "!", put: content, want: d, wantErr: cache.ErrCorrupt},
		{name: "untrusted", stored: "XXXXXXXXXXXX", untrusted: true, put: content, want: d, wantUploads: 1},
		{name: "wrong digest", put: "other", want: d, wantErr: cache.ErrCorrupt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, f, tmp := newStore(t)
			if tc.stored != "" {
				f.blobs[d] = []byte(tc.stored)
				f.untrusted[d] = tc.untrusted
			}
			got, n, err := s.Put(t.Context(), strings.NewReader(tc.put), tc.want)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Put() = %v, want %v", err, tc.wantErr)
				}
				if tc.stored == "" && len(f.blobs) != 0 {
					t.Errorf("Put() refused but committed %d blobs", len(f.blobs))
				}
				return
			}
			if err != nil || got != d || n != int64(len(content)) {
				t.Fatalf("Put() = %s, %d, %v; want %s, %d", got, n, err, d, len(content))
			}
			if f.uploads != tc.wantUploads || string(f.blobs[d]) != content {
				t.Errorf("Put() made %d uploads, stored %q; want %d, %q", f.uploads, f.blobs[d], tc.wantUploads, content)
			}
			if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
				t.Errorf("Put() left %d spool files", len(ents))
			}
		})
	}
}

func TestPutHeadError(t *testing.T) {
	s, f, _ := newStore(t)
	f.headErr = errors.New("connection refused")
	if _, _, err := s.Put(t.Context(), strings.NewReader("x"), digestOf("x")); !errors.Is(err, f.headErr) || f.uploads != 0 {
		t.Errorf("Put() with a failing HEAD = %v after %d uploads; want the HEAD error, no upload", err, f.uploads)
	}
}

func TestPutFile(t *testing.T) {
	s, f, _ := newStore(t)
	p := filepath.Join(t.TempDir(), "kernel")
	if err := os.WriteFile(p, []byte("vmlinuz"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, n, err := s.PutFile(t.Context(), p)
	if err != nil || d != digestOf("vmlinuz") || n != 7 || string(f.blobs[d]) != "vmlinuz" {
		t.Errorf("PutFile() = %s, %d, %v; stored %q", d, n, err, f.blobs[d])
	}
	if _, _, err := s.PutFile(t.Context(), filepath.Dir(p)); err == nil {
		t.Errorf("PutFile(dir) = nil error")
	}
}

func TestOpenStatMaterialize(t *testing.T) {
	s, f, _ := newStore(t)
	good, bad, missing := digestOf("good"), digestOf("bad"), digestOf("missing")
	f.blobs[good] = []byte("good")
	f.blobs[bad] = []byte("BAD")
	if n, err := s.Stat(t.Context(), good); err != nil || n != 4 {
		t.Errorf("Stat() = %d, %v; want 4", n, err)
	}
	for _, d := range []cache.Digest{missing, "sha256:zz"} {
		if _, err := s.Stat(t.Context(), d); !errors.Is(err, cache.ErrNotFound) {
			t.Errorf("Stat(%s) = %v, want ErrNotFound", d, err)
		}
		if _, err := s.Open(t.Context(), d); !errors.Is(err, cache.ErrNotFound) {
			t.Errorf("Open(%s) = %v, want ErrNotFound", d, err)
		}
	}
	rc, err := s.Open(t.Context(), bad)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	if !errors.Is(err, cache.ErrCorrupt) {
		t.Errorf("reading a corrupt blob = %v, want ErrCorrupt", err)
	}
	dir := t.TempDir()
	if err := s.Materialize(t.Context(), bad, filepath.Join(dir, "bad"), false); !errors.Is(err, cache.ErrCorrupt) {
		t.Errorf("Materialize(corrupt) = %v, want ErrCorrupt", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("Materialize(corrupt) left %d files", len(ents))
	}
	dst := filepath.Join(dir, "sub", "good")
	if err := s.Materialize(t.Context(), good, dst, true); err != nil {
		t.Fatalf("Materialize() = %v", err)
	}
	fi, err := os.Stat(dst)
	if b, _ := os.ReadFile(dst); err != nil || string(b) != "good" || fi.Mode().Perm() != 0o444 {
		t.Errorf("materialized %q, %v; want \"good\" with mode 0444", b, fi.Mode())
	}
}

func TestStatAll(t *testing.T) {
	s, f, _ := newStore(t)
	var ds []cache.Digest
	for i := range 20 {
		d := digestOf(fmt.Sprint(i))
		f.blobs[d] = bytes.Repeat([]byte{'x'}, i)
		ds = append(ds, d)
	}
	sizes, err := s.StatAll(t.Context(), ds)
	if err != nil || len(sizes) != 20 || sizes[ds[7]] != 7 {
		t.Errorf("StatAll() = %v, %v; want 20 sizes", sizes, err)
	}
	if _, err := s.StatAll(t.Context(), append(ds, digestOf("missing"))); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("StatAll(with a missing blob) = %v, want ErrNotFound", err)
	}
	ctx, cancel := context.WithCancelCause(t.Context())
	cause := errors.New("build cancelled")
	cancel(cause)
	f.headErr = context.Canceled
	if _, err := s.StatAll(ctx, ds); !errors.Is(err, cause) {
		t.Errorf("StatAll(cancelled) = %v, want %v", err, cause)
	}
}
