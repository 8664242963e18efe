package steps

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/spec"
)

// keyEnv is a KeyEnv without tools or a store: results come from results.
func keyEnv(results map[string]*cache.ActionResult) KeyEnv {
	return KeyEnv{
		TextDigest: func(s string) string { return "text:" + s },
		ToolVersion: func(_ context.Context, name string, _ func(context.Context) (string, error)) (string, error) {
			return name + " 1.0", nil
		},
		Once:   func(_ string, f func() (string, error)) (string, error) { return f() },
		Result: func(id string) *cache.ActionResult { return results[id] },
	}
}

func TestImageKey(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := &spec.Image{Name: "n", Import: src, CACertificates: []string{"PEM"}}
	imp := &Image{Kind: KindImport, Image: img}
	k, err := imp.Key(t.Context(), keyEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if k.Type != "imsbuild/import/v5" || k.Inputs["import"] == "" || k.Inputs["ca_certificates[0]"] != "text:PEM" || k.Tools["mksquashfs"] != "mksquashfs 1.0" {
		t.Fatalf("import Key() = %+v, want the import digest, the CA certificate and mksquashfs", k)
	}

	child := &Image{Kind: KindCustomize, Image: &spec.Image{Name: "c", From: "base"}, Parent: "image.base"}
	if _, err := child.Key(t.Context(), keyEnv(nil)); !errors.Is(err, ErrParentPending) {
		t.Fatalf("Key() before the parent = %v, want ErrParentPending", err)
	}
	parent := &cache.ActionResult{Outputs: map[string]cache.Output{ims.ArtifactRootfs: {Digest: "sha256:aa"}, ims.SBOMFile: {Digest: "sha256:bb"}}}
	k, err = child.Key(t.Context(), keyEnv(map[string]*cache.ActionResult{"image.base": parent}))
	if err != nil {
		t.Fatal(err)
	}
	if k.Parent != "image.base" || k.Inputs["parent."+ims.ArtifactRootfs] != "sha256:aa" {
		t.Fatalf("customize Key() = %+v, want the parent's rootfs digest", k)
	}
	if _, ok := k.Inputs["parent."+ims.SBOMFile]; ok {
		t.Fatalf("customize Key() = %+v, want no parent SBOM (it is derived from the keyed rootfs)", k)
	}
}

func TestHandover(t *testing.T) {
	base := t.TempDir()
	h := NewHandover(base, nil)
	made := filepath.Join(t.TempDir(), "root")
	if err := os.MkdirAll(filepath.Join(made, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	h.give(made)
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if !h.take(root) {
		t.Fatal("take() = false after give, want the root")
	}
	if _, err := os.Stat(filepath.Join(root, "etc")); err != nil {
		t.Fatalf("the handed-over root is not at root: %v", err)
	}
	if h.take(root) {
		t.Fatal("take() = true twice")
	}
	h.give(root)
	h.Drop()
	if left, _ := os.ReadDir(base); len(left) != 0 {
		t.Fatalf("Drop left %v", left)
	}
	var none *Handover // a step without a prepare
	none.give(t.TempDir())
	none.Drop()
	if none.take(t.TempDir()) {
		t.Fatal("a nil handover gave a root")
	}
}
