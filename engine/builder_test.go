package engine

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/imsbuild/imsbuild/internal/registrytest"
	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/spec"
)

// pushDirImage pushes dir as a one-layer image to ref.
func pushDirImage(t *testing.T, dir, ref string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			link, _ = os.Readlink(p)
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = rel
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		}
		return nil
	})
	if err != nil || tw.Close() != nil {
		t.Fatalf("tar %s: %v", dir, err)
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// TestBuilderImageCustomize runs a non-jailed script in an OCI builder
// image (runc) with the image at /mnt/image.
func TestBuilderImageCustomize(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a registry")
	}
	testutil.RequireTool(t, "runc")
	f := newFixture(t)
	reg := registrytest.Start(t)
	builder := testutil.BusyboxRoot(t, false)
	if err := os.WriteFile(filepath.Join(builder, "etc/builder-marker"), []byte("kiwi 9.99 builder\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ref := reg.Ref("builders/busybox:1")
	pushDirImage(t, builder, ref)
	f.cfg.Images["compute"].Customize = []spec.Customize{{Jail: false, BuilderImage: ref,
		Inline: "cat /etc/builder-marker > /mnt/image/etc/built-by\n"}}
	e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{WorkDir: t.TempDir(), StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Build(t.Context(), []string{"image.compute"}); err != nil {
		t.Fatalf("Build() = %v", err)
	}
	if got := unsquash(t, f, e, "image.compute")["etc/built-by"]; !strings.Contains(got, "kiwi 9.99 builder") {
		t.Fatalf("/etc/built-by = %q, want the builder image's marker", got)
	}
}
