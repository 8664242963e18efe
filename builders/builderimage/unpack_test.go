package builderimage_test

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofrs/flock"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/imsbuild/imsbuild/builders/builderimage"
	"github.com/imsbuild/imsbuild/internal/registrytest"
	"github.com/imsbuild/imsbuild/internal/verify"
)

// checkRootfs asserts the flattened busyboxImage: the whiteout removed
// etc/os-release, the upper layer's files are there, modes are kept.
func checkRootfs(t *testing.T, rootfs, marker string) {
	t.Helper()
	if _, err := os.Lstat(filepath.Join(rootfs, "etc/os-release")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("etc/os-release: Lstat() = %v, want it deleted by the whiteout", err)
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "etc/.wh.os-release")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("etc/.wh.os-release: Lstat() = %v, want no whiteout file", err)
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "etc/added")); err != nil || string(b) != marker {
		t.Errorf("etc/added = %q, %v; want %q", b, err, marker)
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "etc/passwd")); err != nil || !strings.HasPrefix(string(b), "root:") {
		t.Errorf("etc/passwd = %q, %v; want the lower layer's file", b, err)
	}
	modes := []struct {
		name string
		mode fs.FileMode
	}{
		{"etc/added", 0o600},
		{"usr/bin/hello", 0o755},
		{"bin/busybox", 0o755},
		{"etc/passwd", 0o644},
		{"tmp", fs.ModeDir | fs.ModeSticky | 0o777},
		{"etc", fs.ModeDir | 0o755},
	}
	for _, m := range modes {
		fi, err := os.Lstat(filepath.Join(rootfs, m.name))
		if err != nil {
			t.Errorf("Lstat(%s) = %v", m.name, err)
		} else if fi.Mode() != m.mode {
			t.Errorf("%s: mode = %v, want %v", m.name, fi.Mode(), m.mode)
		}
	}
	if got, err := os.Readlink(filepath.Join(rootfs, "bin/sh")); err != nil || got != "busybox" {
		t.Errorf("bin/sh -> %q, %v; want busybox", got, err)
	}
}

func TestUnpack(t *testing.T) {
	img := busyboxImage(t, "added by layer 2\n")
	want := digestOf(t, img)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		setup func(t *testing.T) (tagRef, digestRef string)
		// network: refs go to a registry, so requests can be counted.
		network bool
	}{
		{
			name: "in-process registry",
			setup: func(t *testing.T) (string, string) {
				repo := newRegistry(t) + "/builders/kiwi"
				push(t, repo+":10.2", img)
				return repo + ":10.2", repo + "@" + want.String()
			},
			network: true,
		},
		{
			name: "docker-registry",
			setup: func(t *testing.T) (string, string) {
				if testing.Short() {
					t.Skip("real registry: -short")
				}
				repo := registrytest.Start(t).Ref("builders/kiwi")
				push(t, repo+":10.2", img)
				return repo + ":10.2", repo + "@" + want.String()
			},
			network: true,
		},
		{
			name: "oci layout",
			setup: func(t *testing.T) (string, string) {
				dir := writeLayout(t, img, "10.2")
				return builderimage.LayoutScheme + dir + ":10.2", dir + "@" + want.String()
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tagRef, digestRef := tc.setup(t)
			cacheDir := filepath.Join(t.TempDir(), "cache")
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()

			got, err := builderimage.Resolve(ctx, tagRef, builderimage.Options{})
			if err != nil || got != want.String() {
				t.Fatalf("Resolve(%s) = %q, %v; want %s", tagRef, got, err, want)
			}

			cnt := newCounter()
			opts := builderimage.Options{Transport: cnt}
			rootfs, digest, err := builderimage.Unpack(ctx, tagRef, cacheDir, opts)
			if err != nil {
				t.Fatalf("Unpack(%s) = %v", tagRef, err)
			}
			if digest != want.String() {
				t.Errorf("Unpack() digest = %s, want %s", digest, want)
			}
			if wantPath := filepath.Join(cacheDir, want.Hex, "rootfs"); rootfs != wantPath {
				t.Errorf("Unpack() rootfs = %s, want %s", rootfs, wantPath)
			}
			checkRootfs(t, rootfs, "added by layer 2\n")
			if _, err := os.Stat(filepath.Join(cacheDir, want.Hex, "complete")); err != nil {
				t.Errorf("complete marker: %v", err)
			}
			if tc.network {
				if n := len(cnt.requests("/blobs/")); n != len(layers) {
					t.Errorf("first Unpack fetched %d blobs (%v), want the %d layers once", n, cnt.requests("/blobs/"), len(layers))
				}
			}
			before, err := os.Stat(filepath.Join(cacheDir, want.Hex, "complete"))
			if err != nil {
				t.Fatal(err)
			}

			// Pinned by digest: served from the cache, no request at all.
			cnt = newCounter()
			opts.Transport = cnt
			rootfs2, digest2, err := builderimage.Unpack(ctx, digestRef, cacheDir, opts)
			if err != nil || rootfs2 != rootfs || digest2 != digest {
				t.Errorf("Unpack(%s) = %s, %s, %v; want %s, %s", digestRef, rootfs2, digest2, err, rootfs, digest)
			}
			if r := cnt.requests(""); len(r) != 0 {
				t.Errorf("cached Unpack by digest made requests %v, want none", r)
			}
			// By tag: the manifest is resolved again, no blob is fetched.
			if _, _, err := builderimage.Unpack(ctx, tagRef, cacheDir, opts); err != nil {
				t.Errorf("second Unpack(%s) = %v", tagRef, err)
			}
			if r := cnt.requests("/blobs/"); len(r) != 0 {
				t.Errorf("cached Unpack by tag fetched blobs %v, want none", r)
			}
			after, err := os.Stat(filepath.Join(cacheDir, want.Hex, "complete"))
			if err != nil || !os.SameFile(before, after) {
				t.Errorf("complete marker was rewritten (%v): the cache entry was unpacked again", err)
			}
		})
	}
}

func TestUnpackConcurrent(t *testing.T) {
	img := busyboxImage(t, "concurrent\n")
	repo := newRegistry(t) + "/builders/kiwi"
	push(t, repo+":latest", img)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	cacheDir := t.TempDir()
	cnt := newCounter()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	const callers = 4
	var wg sync.WaitGroup
	roots := make([]string, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() {
			roots[i], _, errs[i] = builderimage.Unpack(ctx, repo+":latest", cacheDir, builderimage.Options{Transport: cnt})
		})
	}
	wg.Wait()
	for i := range callers {
		if errs[i] != nil || roots[i] != roots[0] {
			t.Errorf("caller %d: Unpack() = %s, %v; want %s, nil", i, roots[i], errs[i], roots[0])
		}
	}
	checkRootfs(t, roots[0], "concurrent\n")
	for _, l := range layers {
		if n := len(cnt.requests("/blobs/" + digestOf(t, l).String())); n != 1 {
			t.Errorf("layer %s fetched %d times, want once", digestOf(t, l), n)
		}
	}
}

func TestUnpackUnsafe(t *testing.T) {
	tests := []struct {
		name string
		// layers, lowest first, given the directory that must stay empty
		layers func(outside string) [][]ent
		// wantErr: the entry is refused; otherwise it may be dropped (a
		// path under a symlink the flattening hides), but never written
		// outside.
		wantErr bool
	}{
		{"dotdot", func(string) [][]ent { return [][]ent{{file("../../../escape", "x", 0o644)}} }, true},
		{"dotdot inside", func(string) [][]ent { return [][]ent{{file("etc/../../../../escape", "x", 0o644)}} }, true},
		{"absolute", func(outside string) [][]ent {
			return [][]ent{{file(filepath.Join(outside, "escape"), "x", 0o644)}}
		}, true},
		{"through symlink, same layer", func(outside string) [][]ent {
			return [][]ent{{symlink("link", outside), file("link/escape", "x", 0o644)}}
		}, false},
		{"through symlink, lower layer", func(outside string) [][]ent {
			return [][]ent{{symlink("link", outside)}, {file("link/escape", "x", 0o644)}}
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			cacheDir := filepath.Join(parent, "cache")
			outside := filepath.Join(parent, "outside")
			if err := os.Mkdir(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			var layers []v1.Layer
			for i, ents := range tc.layers(outside) {
				if i == 0 {
					ents = append([]ent{file("ok", "fine", 0o644)}, ents...)
				}
				layers = append(layers, mustLayer(t, tarBytes(t, ents...)))
			}
			dir := writeLayout(t, appendLayers(t, layers...), "evil")
			ref := builderimage.LayoutScheme + dir + ":evil"

			_, _, err := builderimage.Unpack(t.Context(), ref, cacheDir, builderimage.Options{})
			if tc.wantErr && err == nil {
				t.Errorf("Unpack() of a layer with an escaping entry = nil, want an error")
			}
			if names := cacheNames(t, outside); len(names) != 0 {
				t.Errorf("outside dir holds %v, want nothing", names)
			}
			if names := cacheNames(t, parent); len(names) != 2 {
				t.Errorf("parent holds %v, want only cache and outside", names)
			}
			if err != nil {
				requireNoEntry(t, cacheDir)
			}
			t.Logf("Unpack() = %v", err)
		})
	}
}

func mustLayer(t testing.TB, b []byte) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromOpener(opener(b))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestUnpackDigestMismatch(t *testing.T) {
	img, layer := rawLayerImage(t)
	// Byte 512+5 is inside data.txt's content: the tar still parses, only
	// the digest tells.
	const offset = 512 + 5

	t.Run("registry", func(t *testing.T) {
		repo := newRegistry(t) + "/builders/raw"
		push(t, repo+":v1", img)
		cacheDir := t.TempDir()
		opts := builderimage.Options{Transport: &tamper{blob: layer, offset: offset}}
		if _, _, err := builderimage.Unpack(t.Context(), repo+":v1", cacheDir, opts); err == nil {
			t.Fatal("Unpack() of a tampered layer = nil, want an error")
		}
		requireNoEntry(t, cacheDir)
		// Nothing was poisoned: the genuine blob unpacks.
		rootfs, _, err := builderimage.Unpack(t.Context(), repo+":v1", cacheDir, builderimage.Options{})
		if err != nil {
			t.Fatalf("Unpack() untampered = %v", err)
		}
		if b, err := os.ReadFile(filepath.Join(rootfs, "data.txt")); err != nil || !strings.HasPrefix(string(b), "imsbuild imsbuild") {
			t.Errorf("data.txt = %.20q, %v", b, err)
		}
	})
	t.Run("layout", func(t *testing.T) {
		dir := writeLayout(t, img, "v1")
		blob := filepath.Join(dir, "blobs", layer.Algorithm, layer.Hex)
		b, err := os.ReadFile(blob)
		if err != nil {
			t.Fatal(err)
		}
		b[offset] ^= 0xff
		if err := os.WriteFile(blob, b, 0o644); err != nil {
			t.Fatal(err)
		}
		cacheDir := t.TempDir()
		_, _, err = builderimage.Unpack(t.Context(), dir+":v1", cacheDir, builderimage.Options{})
		if !errors.Is(err, verify.ErrMismatch) || !strings.Contains(err.Error(), "blob "+layer.String()+": content is sha256:") {
			t.Fatalf("Unpack() of a corrupt layout blob = %v, want verify.ErrMismatch naming %s and the content's digest", err, layer)
		}
		requireNoEntry(t, cacheDir)
	})
}

func TestUnpackCancel(t *testing.T) {
	img := busyboxImage(t, "cancel\n")
	repo := newRegistry(t) + "/builders/kiwi"
	push(t, repo+":latest", img)

	t.Run("during download", func(t *testing.T) {
		cacheDir := t.TempDir()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		tr := &cancelOnBlob{cancel: cancel, base: newCounter()}
		_, _, err := builderimage.Unpack(ctx, repo+":latest", cacheDir, builderimage.Options{Transport: tr})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Unpack() = %v, want context.Canceled", err)
		}
		requireNoEntry(t, cacheDir)
	})
	t.Run("waiting for the lock", func(t *testing.T) {
		cacheDir := t.TempDir()
		h := digestOf(t, img)
		held := flock.New(filepath.Join(cacheDir, h.Hex+".lock"))
		if err := held.Lock(); err != nil {
			t.Fatal(err)
		}
		defer held.Unlock()
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		_, _, err := builderimage.Unpack(ctx, repo+":latest", cacheDir, builderimage.Options{})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Unpack() while another holds the lock = %v, want context.DeadlineExceeded", err)
		}
		requireNoEntry(t, cacheDir)
	})
}

// cancelOnBlob cancels the context when the first blob is requested.
type cancelOnBlob struct {
	cancel context.CancelFunc
	base   *counter
}

func (c *cancelOnBlob) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.Contains(r.URL.Path, "/blobs/") {
		c.cancel()
	}
	return c.base.RoundTrip(r)
}

// TestUnpackStale: leftovers of a caller that died mid-unpack (a temp dir,
// an entry without its complete marker) are replaced, never served.
func TestUnpackStale(t *testing.T) {
	img := appendLayers(t, upperLayer(t, "fresh\n"))
	h := digestOf(t, img)
	dir := writeLayout(t, img, "v1")
	cacheDir := t.TempDir()
	for _, p := range []string{h.Hex + ".tmp-123/rootfs/etc", h.Hex + "/rootfs/etc"} {
		if err := os.MkdirAll(filepath.Join(cacheDir, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(cacheDir, h.Hex, "rootfs/etc/added"), []byte("stale\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rootfs, _, err := builderimage.Unpack(t.Context(), dir+"@"+h.String(), cacheDir, builderimage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "etc/added")); err != nil || string(b) != "fresh\n" {
		t.Errorf("etc/added = %q, %v; want the image's, not the stale entry's", b, err)
	}
	if _, err := os.Stat(filepath.Join(cacheDir, h.Hex+".tmp-123")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale temp dir: Stat() = %v, want removed", err)
	}
}
