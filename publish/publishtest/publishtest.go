package publishtest

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/publish"
)

// Blobs is a publish.Blobs over a directory.
type Blobs struct {
	dir string
	// NoPaths makes Path find nothing, as for a remote blob.
	NoPaths bool
	// OnOpen, when set, wraps the reader of every opened blob.
	OnOpen func(io.Reader) io.Reader

	mu    sync.Mutex
	opens map[digest.Digest]int
}

var _ publish.Blobs = (*Blobs)(nil)

// New returns an empty Blobs in a temp dir of t.
func New(t testing.TB) *Blobs {
	return &Blobs{dir: t.TempDir(), opens: map[digest.Digest]int{}}
}

func (b *Blobs) file(d digest.Digest) string { return filepath.Join(b.dir, d.Encoded()) }

// Add stores data and returns it as the artifact name (media type and md5
// set as the pack step records them).
func (b *Blobs) Add(t testing.TB, name string, data []byte) publish.Artifact {
	t.Helper()
	return b.AddReader(t, name, bytes.NewReader(data))
}

// AddReader stores what r holds, streaming, and returns it like Add.
func (b *Blobs) AddReader(t testing.TB, name string, r io.Reader) publish.Artifact {
	t.Helper()
	f, err := os.CreateTemp(b.dir, ".tmp-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	sh, mh := sha256.New(), md5.New()
	n, err := io.Copy(io.MultiWriter(f, sh, mh), r)
	if err != nil {
		t.Fatal(err)
	}
	d := digest.NewDigest(digest.SHA256, sh)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(f.Name(), b.file(d)); err != nil {
		t.Fatal(err)
	}
	return publish.Artifact{Digest: d, Size: n, MediaType: ims.MediaTypeOf(name), MD5: hex.EncodeToString(mh.Sum(nil))}
}

// Bytes returns the stored content of d.
func (b *Blobs) Bytes(t testing.TB, d digest.Digest) []byte {
	t.Helper()
	data, err := os.ReadFile(b.file(d))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// Corrupt replaces the content of d with as many other bytes, so that
// only reading it to the end tells.
func (b *Blobs) Corrupt(t testing.TB, d digest.Digest) {
	t.Helper()
	data, err := os.ReadFile(b.file(d))
	if err != nil {
		t.Fatal(err)
	}
	for i := range data {
		data[i] ^= 0xff
	}
	if err := os.WriteFile(b.file(d), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Opens returns how often d was opened.
func (b *Blobs) Opens(d digest.Digest) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.opens[d]
}

// Open opens d through a reader that checks its sha256 at EOF.
func (b *Blobs) Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	if err := publish.CheckDigest(d); err != nil {
		return nil, fmt.Errorf("open blob: %w: %w", err, publish.ErrNotFound)
	}
	f, err := os.Open(b.file(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open blob %s: %w", d, publish.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.opens[d]++
	b.mu.Unlock()
	var r io.Reader = &verifier{r: f, h: sha256.New(), want: d}
	if b.OnOpen != nil {
		r = b.OnOpen(r)
	}
	return struct {
		io.Reader
		io.Closer
	}{r, f}, nil
}

// Stat returns the size of d.
func (b *Blobs) Stat(ctx context.Context, d digest.Digest) (int64, error) {
	if err := publish.CheckDigest(d); err != nil {
		return 0, fmt.Errorf("stat blob: %w: %w", err, publish.ErrNotFound)
	}
	fi, err := os.Stat(b.file(d))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("stat blob %s: %w", d, publish.ErrNotFound)
	}
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// Path returns the file of d, unless NoPaths is set.
func (b *Blobs) Path(ctx context.Context, d digest.Digest) (string, bool) {
	if b.NoPaths || publish.CheckDigest(d) != nil {
		return "", false
	}
	p := b.file(d)
	if _, err := os.Stat(p); err != nil {
		return "", false
	}
	return p, true
}

type verifier struct {
	r    io.Reader
	h    hash.Hash
	want digest.Digest
}

func (v *verifier) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	if err == io.EOF {
		if got := digest.NewDigest(digest.SHA256, v.h); got != v.want {
			return n, fmt.Errorf("blob %s has content %s: %w", v.want, got, publish.ErrCorrupt)
		}
	}
	return n, err
}
