package engine

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/builders/steps"
	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// TestSourceDateEpoch: without SOURCE_DATE_EPOCH an image imported from a
// squashfs takes that squashfs' creation time as its epoch, its customized
// child inherits it, and both manifests are created at it; normalize runs
// unless normalize = false. SOURCE_DATE_EPOCH set wins and is in the keys:
// another value rebuilds, the same one is cached.
func TestSourceDateEpoch(t *testing.T) {
	f := newFixture(t)
	root := f.cfg.Images["base"].Import
	if err := os.MkdirAll(filepath.Join(root, "var/log"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "var/log/dpkg.log"), []byte("2026-12-03 15:00:00 install x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const imported = 1700000000
	sq := filepath.Join(t.TempDir(), "root.squashfs")
	if out, err := exec.CommandContext(t.Context(), "mksquashfs", root, sq, "-no-progress", "-quiet", "-mkfs-time", "1700000000").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	base := f.cfg.Images["base"]
	base.Import = sq
	raw := *base
	raw.Label, raw.Name, raw.SkipNormalize = "raw", "raw", true
	f.cfg.Images["raw"] = &raw
	f.cfg.Publishes[0].Images = []string{"base", "compute", "raw"}

	e := f.engine(t, nil)
	if err := e.Build(t.Context(), nil); err != nil {
		t.Fatalf("Build() = %v", err)
	}
	for _, id := range []string{"image.base", "image.compute", "image.raw"} {
		if got := f.epochOf(t, e, id); got != imported {
			t.Errorf("%s epoch = %d, want the imported squashfs' %d", id, got, imported)
		}
		f.checkCreated(t, e, id, imported)
	}
	if got := f.cat(t, e, "image.base", "var/log/dpkg.log"); got != "" {
		t.Errorf("base /var/log/dpkg.log = %q, want it truncated", got)
	}
	if got := f.cat(t, e, "image.raw", "var/log/dpkg.log"); got != "2026-12-03 15:00:00 install x\n" {
		t.Errorf("normalize = false: /var/log/dpkg.log = %q, want it kept", got)
	}
	if e.result("image.base").Outputs[ims.ArtifactRootfs].Digest == e.result("image.raw").Outputs[ims.ArtifactRootfs].Digest {
		t.Error("normalize = false gave the normalized rootfs")
	}

	const explicit = 1800000000
	env := []string{"SOURCE_DATE_EPOCH=1800000000"}
	got, err := f.build(t, t.Context(), Options{Environ: env})
	want := map[string]Status{"image.base": StatusDone, "image.compute": StatusDone, "image.raw": StatusDone, "publish.dir.local": StatusDone}
	if err != nil || !mapsEqual(got, want) {
		t.Fatalf("build with SOURCE_DATE_EPOCH = %v, %v; want %v", got, err, want)
	}
	e = f.engine(t, env)
	for _, id := range []string{"image.base", "image.compute", "image.raw"} {
		if err := e.Build(t.Context(), []string{id}); err != nil {
			t.Fatal(err)
		}
		if got := f.epochOf(t, e, id); got != explicit {
			t.Errorf("%s epoch = %d, want SOURCE_DATE_EPOCH %d", id, got, explicit)
		}
		f.checkCreated(t, e, id, explicit)
	}
	got, err = f.build(t, t.Context(), Options{Environ: env})
	want = map[string]Status{"image.base": StatusCached, "image.compute": StatusCached, "image.raw": StatusCached, "publish.dir.local": StatusDone}
	if err != nil || !mapsEqual(got, want) {
		t.Fatalf("second build with the same SOURCE_DATE_EPOCH = %v, %v; want %v", got, err, want)
	}
}

func (f *fixture) engine(t *testing.T, environ []string) *Engine {
	t.Helper()
	e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{Environ: environ, WorkDir: filepath.Join(f.cache.Dir(), "work", "test")})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// epochOf returns the creation time of image id's rootfs.
func (f *fixture) epochOf(t *testing.T, e *Engine, id string) int64 {
	t.Helper()
	epoch, err := steps.BlobEpoch(t.Context(), f.cache, e.result(id).Outputs[ims.ArtifactRootfs].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return epoch
}

// checkCreated checks that image id's published manifest is created at
// epoch.
func (f *fixture) checkCreated(t *testing.T, e *Engine, id string, epoch int64) {
	t.Helper()
	img, err := e.publishImage(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(f.out, "boot-images", img.ID, ims.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	m, err := ims.ParseManifest(raw)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Unix(epoch, 0).UTC().Format(ims.ManifestTimeLayout); m.Created != want {
		t.Errorf("%s manifest created %q, want %q", id, m.Created, want)
	}
}

// cat returns file name of image id's rootfs.
func (f *fixture) cat(t *testing.T, e *Engine, id, name string) string {
	t.Helper()
	blob := f.cache.BlobPath(e.result(id).Outputs[ims.ArtifactRootfs].Digest)
	out, err := exec.CommandContext(t.Context(), "unsquashfs", "-cat", blob, name).Output()
	if err != nil {
		t.Fatalf("unsquashfs -cat %s: %v", name, err)
	}
	return string(out)
}

// TestKiwiEpoch: a recipe image's epoch is the newest Date: of its
// repositories' Release: kiwi runs with it as SOURCE_DATE_EPOCH and with
// dracut's reproducible mode, and the image and its child are dated by it.
func TestKiwiEpoch(t *testing.T) {
	testutil.FakeKiwi(t)
	fake, err := exec.LookPath("kiwi-ng")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	seen := filepath.Join(bin, "env")
	wrapper := "#!/bin/sh\n[ \"$1\" = --version ] || echo \"$SOURCE_DATE_EPOCH $DRACUT_REPRODUCIBLE\" > " + seen + "\nexec " + fake + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "kiwi-ng"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	srv, release := repoServer(t)
	release.Store("Origin: Debian\nSuite: bookworm\nDate: Sat, 11 Jul 2026 10:16:37 UTC\n")
	f := kiwiFixture(t, srv.URL+"/debian")
	e := f.engine(t, nil)
	if err := e.Build(t.Context(), nil); err != nil {
		t.Fatalf("Build() = %v", err)
	}
	const want = 1783764997 // 2026-07-11T10:16:37Z
	if b, err := os.ReadFile(seen); err != nil || string(b) != "1783764997 1\n" {
		t.Errorf("kiwi's SOURCE_DATE_EPOCH and DRACUT_REPRODUCIBLE = %q, %v; want %q", b, err, "1783764997 1\n")
	}
	for _, id := range []string{"image.base", "image.compute"} {
		if got := f.epochOf(t, e, id); got != want {
			t.Errorf("%s epoch = %d, want the repository's date %d", id, got, want)
		}
		f.checkCreated(t, e, id, want)
	}
}
