package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/internal/md5hex"
)

// fileStore is a minimal cache.Store over a directory, verifying digests on
// read like the real stores do. onOpen, when set, wraps every opened blob.
type fileStore struct {
	dir    string
	onOpen func(io.Reader) io.Reader
}

var _ cache.Store = (*fileStore)(nil)

func newFileStore(t testing.TB) *fileStore { return &fileStore{dir: t.TempDir()} }

func (s *fileStore) path(d cache.Digest) string { return filepath.Join(s.dir, d.Hex()) }

func (s *fileStore) Put(ctx context.Context, r io.Reader, want cache.Digest) (cache.Digest, int64, error) {
	f, err := os.CreateTemp(s.dir, "tmp-")
	if err != nil {
		return "", 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), r)
	if err != nil {
		return "", 0, err
	}
	d := cache.Digest("sha256:" + hex.EncodeToString(h.Sum(nil)))
	if want != "" && want != d {
		return "", 0, cache.ErrCorrupt
	}
	if err := f.Close(); err != nil {
		return "", 0, err
	}
	return d, n, os.Rename(f.Name(), s.path(d))
}

func (s *fileStore) PutFile(ctx context.Context, path string) (cache.Digest, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	return s.Put(ctx, f, "")
}

func (s *fileStore) Open(ctx context.Context, d cache.Digest) (io.ReadCloser, error) {
	f, err := os.Open(s.path(d))
	if os.IsNotExist(err) {
		return nil, fmt.Errorf("open %s: %w", d, cache.ErrNotFound)
	} else if err != nil {
		return nil, err
	}
	var r io.Reader = &verifyReader{r: f, h: sha256.New(), want: d}
	if s.onOpen != nil {
		r = s.onOpen(r)
	}
	return struct {
		io.Reader
		io.Closer
	}{r, f}, nil
}

func (s *fileStore) Stat(ctx context.Context, d cache.Digest) (int64, error) {
	fi, err := os.Stat(s.path(d))
	if os.IsNotExist(err) {
		return 0, cache.ErrNotFound
	} else if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (s *fileStore) Materialize(ctx context.Context, d cache.Digest, dst string, readOnly bool) error {
	return os.Link(s.path(d), dst)
}

type verifyReader struct {
	r    io.Reader
	h    hash.Hash
	want cache.Digest
}

func (v *verifyReader) Read(b []byte) (int, error) {
	n, err := v.r.Read(b)
	v.h.Write(b[:n])
	if err == io.EOF && "sha256:"+hex.EncodeToString(v.h.Sum(nil)) != string(v.want) {
		return n, fmt.Errorf("blob %s: %w", v.want, cache.ErrCorrupt)
	}
	return n, err
}

// putBlob stores size deterministic pseudo-random bytes (seeded) and returns
// the output with its md5.
func putBlob(t testing.TB, s cache.Store, seed uint64, size int64) cache.Output {
	t.Helper()
	var key [32]byte
	key[0], key[1] = byte(seed), byte(seed>>8)
	m := md5.New()
	r := io.TeeReader(io.LimitReader(rand.NewChaCha8(key), size), m)
	d, n, err := s.Put(t.Context(), r, "")
	if err != nil {
		t.Fatalf("Put() error: %v", err)
	}
	return cache.Output{Digest: d, Size: n, MD5: hex.EncodeToString(m.Sum(nil))}
}

// putBytes stores b.
func putBytes(t testing.TB, s cache.Store, b []byte) cache.Output {
	t.Helper()
	d, n, err := s.Put(t.Context(), bytes.NewReader(b), "")
	if err != nil {
		t.Fatalf("Put() error: %v", err)
	}
	return cache.Output{Digest: d, Size: n, MD5: md5hex.Of(b)}
}
