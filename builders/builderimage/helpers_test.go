package builderimage_test

import (
	"archive/tar"
	"bytes"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imsbuild/imsbuild/internal/testutil"
)

// mtime is the modification time of the entries the tests write.
var mtime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// ent is one tar entry of a test layer.
type ent struct {
	name, body, link string
	typ              byte
	mode             int64
}

func file(name, body string, mode int64) ent {
	return ent{name: name, body: body, typ: tar.TypeReg, mode: mode}
}

func symlink(name, target string) ent {
	return ent{name: name, link: target, typ: tar.TypeSymlink, mode: 0o777}
}

// tarBytes returns a small tar archive of ents.
func tarBytes(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Typeflag: e.typ, Name: e.name, Linkname: e.link, Mode: e.mode, Size: int64(len(e.body)), ModTime: mtime}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tarDir streams the tree at root into a tar file and returns its path.
func tarDir(t testing.TB, root string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "layer.tar")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		var link string
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		h.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			defer src.Close()
			if _, err := io.Copy(tw, src); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// upperLayer deletes etc/os-release with a whiteout and adds files.
func upperLayer(t testing.TB, marker string) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromOpener(opener(tarBytes(t,
		file("etc/.wh.os-release", "", 0o644),
		file("etc/added", marker, 0o600),
		file("usr/bin/hello", "#!/bin/sh\necho hello\n", 0o755),
	)))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func opener(b []byte) tarball.Opener {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// busyboxImage is a two-layer image: a busybox root, then upperLayer with
// marker as the content of /etc/added.
func busyboxImage(t testing.TB, marker string) v1.Image {
	t.Helper()
	base, err := tarball.LayerFromFile(tarDir(t, testutil.BusyboxRoot(t, false)))
	if err != nil {
		t.Fatal(err)
	}
	return appendLayers(t, base, upperLayer(t, marker))
}

func appendLayers(t testing.TB, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.ConfigFile(img, configFile(t, img, "amd64"))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func configFile(t testing.TB, img v1.Image, arch string) *v1.ConfigFile {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	return cf
}

// rawLayerImage is a one-layer image whose layer is an uncompressed tar,
// so that only a digest check notices a changed content byte.
func rawLayerImage(t testing.TB) (v1.Image, v1.Hash) {
	t.Helper()
	l := static.NewLayer(tarBytes(t, file("data.txt", strings.Repeat("imsbuild ", 64), 0o644)), types.DockerUncompressedLayer)
	h, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return appendLayers(t, l), h
}

func digestOf(t testing.TB, d interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// newRegistry starts an in-process registry and returns its host.
func newRegistry(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// push writes img to ref (a tag).
func push(t testing.TB, ref string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithContext(t.Context())); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// writeLayout writes img to a new OCI layout, tagged tag.
func writeLayout(t testing.TB, img v1.Image, tag string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag})); err != nil {
		t.Fatal(err)
	}
	return dir
}

// counter is a RoundTripper that records the requests it carries.
type counter struct {
	base http.RoundTripper
	mu   sync.Mutex
	reqs []string // "METHOD path"
}

func newCounter() *counter { return &counter{base: http.DefaultTransport} }

func (c *counter) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.reqs = append(c.reqs, r.Method+" "+r.URL.Path)
	c.mu.Unlock()
	return c.base.RoundTrip(r)
}

// requests returns the recorded requests whose path contains substr.
func (c *counter) requests(substr string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, r := range c.reqs {
		if strings.Contains(r, substr) {
			out = append(out, r)
		}
	}
	return out
}

// tamper is a RoundTripper that flips one byte, at offset, of the blob it
// is told to corrupt.
type tamper struct {
	blob   v1.Hash
	offset int64
}

func (tp *tamper) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil || r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+tp.blob.String()) {
		return resp, err
	}
	resp.Body = &flipper{ReadCloser: resp.Body, at: tp.offset}
	return resp, nil
}

type flipper struct {
	io.ReadCloser
	at, n int64
}

func (f *flipper) Read(p []byte) (int, error) {
	n, err := f.ReadCloser.Read(p)
	if i := f.at - f.n; i >= 0 && i < int64(n) {
		p[i] ^= 0xff
	}
	f.n += int64(n)
	return n, err
}

// cacheNames lists what dir holds, for checks that a failure left no entry.
func cacheNames(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// requireNoEntry fails unless dir holds nothing but lock files.
func requireNoEntry(t testing.TB, dir string) {
	t.Helper()
	for _, n := range cacheNames(t, dir) {
		if !strings.HasSuffix(n, ".lock") {
			t.Errorf("cache dir holds %s after a failed unpack, want only lock files", n)
		}
	}
}

// writeIndex pushes idx to ref (a tag).
func writeIndex(t testing.TB, ref string, idx v1.ImageIndex) error {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		return err
	}
	return remote.WriteIndex(r, idx)
}
