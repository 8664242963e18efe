package engine

import (
	"crypto/md5"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/spec"
)

// corruptInPlace overwrites 4 bytes in the middle of blob d, keeping its size.
func corruptInPlace(t *testing.T, f *fixture, d cache.Digest) {
	t.Helper()
	p := f.cache.BlobPath(d)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	fh, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	off := fi.Size() / 2
	if _, err := fh.ReadAt(buf, off); err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] ^= 0xff
	}
	if _, err := fh.WriteAt(buf, off); err != nil {
		t.Fatal(err)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
}

// published returns image id → md5 of its published rootfs.
func published(t *testing.T, f *fixture) map[string]string {
	t.Helper()
	out := map[string]string{}
	dirs, err := filepath.Glob(filepath.Join(f.out, "boot-images", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		fh, err := os.Open(filepath.Join(d, "rootfs"))
		if err != nil {
			t.Fatal(err)
		}
		h := md5.New()
		_, err = io.Copy(h, fh)
		fh.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(d)] = hex.EncodeToString(h.Sum(nil))
	}
	return out
}

// TestCorruptParentRebuilt is the audit's case: 4 bytes of the parent's
// cached rootfs change in place (same size). The next build must find it,
// build the parent again and the child from the good parent, and publish
// exactly what a clean build publishes.
func TestCorruptParentRebuilt(t *testing.T) {
	f := newFixture(t)
	e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Build(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	parent := e.result("image.base").Outputs["rootfs"].Digest
	child := e.result("image.compute").Outputs["rootfs"].Digest
	clean := published(t, f)

	corruptInPlace(t, f, parent)
	got, err := f.build(t, t.Context(), Options{})
	if err != nil {
		t.Fatalf("Build() after the damage = %v", err)
	}
	want := map[string]Status{"image.base": StatusDone, "image.compute": StatusDone, "publish.dir.local": StatusDone}
	if !mapsEqual(got, want) {
		t.Errorf("statuses after the damage = %v, want %v (parent and child built again)", got, want)
	}
	e2, err := New(f.cfg, f.cache, f.cache.Actions(), Options{WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := e2.Build(t.Context(), []string{"image.compute"}); err != nil {
		t.Fatal(err)
	}
	if d := e2.result("image.base").Outputs["rootfs"].Digest; d != parent || blobSum(t, f, "image.base", e2) != string(parent) {
		t.Errorf("parent rootfs now %s with content %s, want %s", d, blobSum(t, f, "image.base", e2), parent)
	}
	if d := e2.result("image.compute").Outputs["rootfs"].Digest; d != child {
		t.Errorf("child rootfs now %s, want %s as built from the good parent", d, child)
	}
	if diff := cmp.Diff(clean, published(t, f)); diff != "" {
		t.Errorf("published rootfs md5s differ from a clean build's (-clean +got):\n%s", diff)
	}
}

// TestCorruptParentNeverUnpacked: the child changes while the parent's
// cached rootfs is corrupt. The child must be built from the rebuilt good
// parent, never from the corrupt bytes (before, a hard link handed them to
// unsquashfs unchecked and the result was cached under a fresh digest).
func TestCorruptParentNeverUnpacked(t *testing.T) {
	f := newFixture(t)
	if _, err := f.build(t, t.Context(), Options{}); err != nil {
		t.Fatal(err)
	}
	e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Build(t.Context(), []string{"image.base"}); err != nil {
		t.Fatal(err)
	}
	corruptInPlace(t, f, e.result("image.base").Outputs["rootfs"].Digest)

	changed := []spec.Customize{{Jail: true, Inline: "echo other > /etc/role\n"}}
	f.cfg.Images["compute"].Customize = changed
	got, err := f.build(t, t.Context(), Options{})
	if err != nil {
		t.Fatalf("Build() = %v", err)
	}
	if got["image.base"] != StatusDone || got["image.compute"] != StatusDone {
		t.Errorf("statuses = %v, want base and compute built", got)
	}

	// The same change built on a fresh cache publishes the same bytes.
	ref := newFixture(t)
	ref.cfg.Images["compute"].Customize = changed
	if _, err := ref.build(t, t.Context(), Options{}); err != nil {
		t.Fatal(err)
	}
	have := published(t, f) // also holds the first build's child
	for id, sum := range published(t, ref) {
		if have[id] != sum {
			t.Errorf("published %s rootfs md5 = %q, want %s as a clean build publishes", id, have[id], sum)
		}
	}
}
