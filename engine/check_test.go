package engine

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/internal/treediff"
	"github.com/imsbuild/imsbuild/spec"
)

// The check-mode tests run fake steps (sched_test.go) under -short.

// snapshot lists every file below dir with its content digest, so a test
// can tell that the cache stayed as it was. Step logs (logs/, beside the
// cache in a test) are not the cache: a check keeps its own there.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.HasPrefix(p, filepath.Join(dir, "logs")+"/") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		m[strings.TrimPrefix(p, dir)] = fmt.Sprintf("%x", sha256.Sum256(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (b *fakeBuild) check(t *testing.T, targets ...string) (*recorder, error) {
	t.Helper()
	e, rec := b.engine(t, Options{Jobs: 2, Check: true})
	return rec, e.Build(t.Context(), targets)
}

// TestFakeCheckIdentical: a check rebuilds every image step (parents taken
// from the cache, never rebuilt twice) and reports them identical; the
// cache is untouched.
func TestFakeCheckIdentical(t *testing.T) {
	b := newFakeBuild(t, "base", "compute<base", "other")
	if _, err := b.build(t, t.Context(), Options{}); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, b.cache.Dir())
	rec, err := b.check(t)
	if err != nil {
		t.Fatalf("check of an unchanged build = %v, want nil", err)
	}
	want := map[string]Status{"image.base": StatusIdentical, "image.compute": StatusIdentical, "image.other": StatusIdentical}
	if got := rec.statuses(); !mapsEqual(got, want) {
		t.Fatalf("statuses = %v, want %v", got, want)
	}
	for id, n := range b.steps.builds {
		if n != 2 {
			t.Errorf("%s built %d times, want twice (build, check)", id, n)
		}
	}
	checking := 0
	for _, ev := range rec.events {
		if ev.Status == StatusChecking {
			checking++
		}
	}
	if checking != 3 {
		t.Errorf("%d checking events, want 3", checking)
	}
	if diff := cmp.Diff(before, snapshot(t, b.cache.Dir())); diff != "" {
		t.Errorf("check changed the cache (-before +after):\n%s", diff)
	}
}

// TestFakeCheckDiffers: a step whose rebuild gives other bytes is reported
// with both digests; its child is checked against the cached parent (and
// so is identical); the cache keeps the old result.
func TestFakeCheckDiffers(t *testing.T) {
	b := newFakeBuild(t, "base", "compute<base")
	b.steps.output["base"] = ims.ArtifactKernel // not a squashfs: compared by digest
	if _, err := b.build(t, t.Context(), Options{}); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, b.cache.Dir())
	b.steps.content["base"] = "not reproducible"
	rec, err := b.check(t)
	de, ok := errors.AsType[*DiffError](err)
	if !ok || de.Step != "image.base" {
		t.Fatalf("check = %v, want the DiffError of image.base", err)
	}
	want := map[string]Status{"image.base": StatusDiffers, "image.compute": StatusIdentical}
	if got := rec.statuses(); !mapsEqual(got, want) {
		t.Fatalf("statuses = %v, want %v", got, want)
	}
	var ev *Event
	for i := range rec.events {
		if rec.events[i].Step == "image.base" && rec.events[i].Status == StatusDiffers {
			ev = &rec.events[i]
		}
	}
	if ev == nil || ev.Check == nil || len(ev.Check.Outputs) != 1 {
		t.Fatalf("differs event = %+v, want one output difference", ev)
	}
	d := ev.Check.Outputs[0]
	if d.Name != ims.ArtifactKernel || d.Diff != DiffContent || d.Old == nil || d.New == nil ||
		d.Old.Size != int64(len("base")) || d.New.Size != int64(len("not reproducible")) || d.Old.Digest == d.New.Digest {
		t.Errorf("difference = %+v, want the kernel's old and new digest and size", d)
	}
	if diff := cmp.Diff(before, snapshot(t, b.cache.Dir())); diff != "" {
		t.Errorf("check changed the cache (-before +after):\n%s", diff)
	}
	// A normal build still finds everything cached: the check recorded nothing.
	got, err := b.build(t, t.Context(), Options{})
	if err != nil || !mapsEqual(got, map[string]Status{"image.base": StatusCached, "image.compute": StatusCached}) {
		t.Fatalf("build after check = %v, %v; want all cached", got, err)
	}
}

// TestFakeCheckMissingOutput: an output the rebuild no longer makes is
// "missing", a new one "extra".
func TestFakeCheckMissingOutput(t *testing.T) {
	b := newFakeBuild(t, "base")
	b.steps.output["base"] = ims.ArtifactKernel
	if _, err := b.build(t, t.Context(), Options{}); err != nil {
		t.Fatal(err)
	}
	b.steps.output["base"] = ims.ArtifactInitrd
	_, err := b.check(t)
	de, ok := errors.AsType[*DiffError](err)
	if !ok {
		t.Fatalf("check = %v, want a DiffError", err)
	}
	got := []string{}
	for _, o := range de.Report.Outputs {
		got = append(got, o.Name+" "+o.Diff)
	}
	if want := []string{"initrd extra", "kernel missing"}; !cmp.Equal(got, want) {
		t.Errorf("differences = %v, want %v", got, want)
	}
}

// TestFakeCheckNotBuilt: with nothing cached a check builds nothing and
// says so for every step; a child of an unbuilt parent is skipped.
func TestFakeCheckNotBuilt(t *testing.T) {
	b := newFakeBuild(t, "base", "compute<base", "other")
	before := snapshot(t, b.cache.Dir())
	rec, err := b.check(t)
	nb, ok := errors.AsType[*NotBuiltError](err)
	if !ok || !strings.Contains(nb.Error(), "not yet built") {
		t.Fatalf("check = %v, want a NotBuiltError", err)
	}
	want := map[string]Status{"image.base": StatusFailed, "image.compute": StatusSkipped, "image.other": StatusFailed}
	if got := rec.statuses(); !mapsEqual(got, want) {
		t.Fatalf("statuses = %v, want %v (a not-built step does not stop the others)", got, want)
	}
	if len(b.steps.builds) != 0 {
		t.Errorf("a check of nothing cached built %v", b.steps.builds)
	}
	if diff := cmp.Diff(before, snapshot(t, b.cache.Dir())); diff != "" {
		t.Errorf("check changed the cache (-before +after):\n%s", diff)
	}
}

// TestFakeCheckInteractive: with no target, an interactive image (never
// cached) is skipped and the others are checked; named, it is not built.
func TestFakeCheckInteractive(t *testing.T) {
	b := newFakeBuild(t, "base", "other")
	if _, err := b.build(t, t.Context(), Options{}); err != nil {
		t.Fatal(err)
	}
	e, rec := b.engine(t, Options{Check: true, Interactive: []string{"other"}})
	if err := e.Build(t.Context(), nil); err != nil {
		t.Fatalf("check = %v, want nil", err)
	}
	if got, want := rec.statuses(), (map[string]Status{"image.base": StatusIdentical, "image.other": StatusSkipped}); !mapsEqual(got, want) {
		t.Fatalf("statuses = %v, want %v", got, want)
	}
	e, _ = b.engine(t, Options{Check: true, Interactive: []string{"other"}})
	if _, ok := errors.AsType[*NotBuiltError](e.Build(t.Context(), []string{"other"})); !ok {
		t.Errorf("check of a named interactive image: want a NotBuiltError")
	}
}

// TestFakeCheckTargets: a target is checked alone, its parent taken from
// the cache (not rebuilt); a publish or a /prepare of an image without one
// is a CheckTargetError.
func TestFakeCheckTargets(t *testing.T) {
	b := newFakeBuild(t, "base", "compute<base", "other")
	if _, err := b.build(t, t.Context(), Options{}); err != nil {
		t.Fatal(err)
	}
	rec, err := b.check(t, "compute")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := rec.statuses(), (map[string]Status{"image.base": StatusCached, "image.compute": StatusIdentical}); !mapsEqual(got, want) {
		t.Fatalf("statuses = %v, want %v", got, want)
	}
	if n := b.steps.builds["image.base"]; n != 1 {
		t.Errorf("the parent of the checked step was built %d times, want once (the first build)", n)
	}
	for _, target := range []string{"image.base/prepare"} {
		_, err := b.check(t, target)
		if _, ok := errors.AsType[*CheckTargetError](err); !ok {
			t.Errorf("check %s = %v, want a CheckTargetError", target, err)
		}
	}
	if _, err := b.check(t, "image.nope"); err == nil {
		t.Errorf("check of an unknown target succeeded")
	}
}

// TestKiwiCheck: a check of a recipe image rebuilds the image step from
// the cached prepared root (kiwi does not run); image.x/prepare runs kiwi
// again and compares the prepared roots, the image step not run; a kiwi
// that writes the time into the root makes the prepare differ.
func TestKiwiCheck(t *testing.T) {
	runs := testutil.FakeKiwi(t)
	inner, err := exec.LookPath("kiwi-ng")
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := repoServer(t)
	f := kiwiFixture(t, srv.URL+"/debian")
	if _, err := f.build(t, t.Context(), Options{}); err != nil {
		t.Fatal(err)
	}
	got, err := f.build(t, t.Context(), Options{Check: true})
	want := map[string]Status{"image.base/prepare": StatusCached, "image.base": StatusIdentical, "image.compute": StatusIdentical}
	if err != nil || !mapsEqual(got, want) || runs() != 1 {
		t.Fatalf("check = %v, %v with %d kiwi runs; want %v and 1 run", got, err, runs(), want)
	}
	checkPrepare := func() (map[string]Status, error) {
		t.Helper()
		rec := &recorder{}
		e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{Check: true, Events: rec.add, WorkDir: filepath.Join(f.cache.Dir(), "work", "t")})
		if err != nil {
			t.Fatal(err)
		}
		err = e.Build(t.Context(), []string{"image.base/prepare"})
		return rec.statuses(), err
	}
	got, err = checkPrepare()
	if want := (map[string]Status{"image.base/prepare": StatusIdentical}); err != nil || !mapsEqual(got, want) || runs() != 2 {
		t.Fatalf("check of the prepare = %v, %v with %d kiwi runs in all; want %v, 2 runs", got, err, runs(), want)
	}

	// A kiwi that leaves the time in the root.
	wrap := t.TempDir()
	script := "#!/bin/sh\n" + inner + " \"$@\" || exit $?\n" +
		"while [ $# -gt 0 ]; do [ \"$1\" = --root ] && date +%s%N > \"$2/etc/prepared-at\"; shift; done\n"
	if err := os.WriteFile(filepath.Join(wrap, "kiwi-ng"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", wrap+":"+os.Getenv("PATH"))
	got, err = checkPrepare()
	de, ok := errors.AsType[*DiffError](err)
	if want := (map[string]Status{"image.base/prepare": StatusDiffers}); !ok || !mapsEqual(got, want) {
		t.Fatalf("check of a prepare that writes the time = %v, %v; want %v", got, err, want)
	}
	if o := de.Report.Outputs; len(o) != 1 || o[0].Name != "prepared-root" || len(o[0].Changes) == 0 ||
		o[0].Changes[len(o[0].Changes)-1].Path != "/etc/prepared-at" || o[0].Changes[len(o[0].Changes)-1].What != "extra" {
		t.Fatalf("differences = %+v, want /etc/prepared-at extra in the prepared root", o)
	}
}

// TestRedactChanges: a sensitive value in a path, link target or xattr of
// the image never reaches a check's report.
func TestRedactChanges(t *testing.T) {
	const secret = "hunter2-very-secret"
	rep := &CheckReport{Outputs: []OutputDiff{{Name: "rootfs", Changes: []treediff.Change{
		{Path: "/etc/" + secret, What: treediff.Extra},
		{Path: "/etc/link", What: treediff.Symlink, Old: "/a", New: "/" + secret},
		{Path: "/bin/sh", What: treediff.Xattr, Old: `user.k="` + secret + `"`},
	}}}}
	redactChanges(rep, spec.NewRedactor([]string{secret}))
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), secret) || !strings.Contains(string(b), spec.Redacted) {
		t.Fatalf("redacted report = %s, want the secret masked", b)
	}
}

// TestFakeCheckSquashfsTrees: a differing rootfs is unpacked (the real
// unsquashfs) and its tree compared: a changed file is named; equal trees
// in squashfs files that differ in compression only are said to be so.
func TestFakeCheckSquashfsTrees(t *testing.T) {
	mk := testutil.RequireTool(t, "mksquashfs")
	testutil.RequireTool(t, "unsquashfs")
	squash := func(motd, comp string) string {
		t.Helper()
		root := t.TempDir()
		if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "etc/motd"), []byte(motd), 0o644); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "rootfs")
		if b, err := exec.Command(mk, root, out, "-noappend", "-no-progress", "-quiet", "-all-root", "-all-time", "1", "-mkfs-time", "1", "-comp", comp).CombinedOutput(); err != nil {
			t.Fatalf("mksquashfs: %v\n%s", err, b)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, tc := range []struct {
		name, motd, comp string
		want             func(OutputDiff) bool
	}{
		{"changed file", "other\n", "gzip", func(d OutputDiff) bool {
			return d.TotalChanges == 1 && d.Changes[0].Path == "/etc/motd" && d.Changes[0].What == treediff.Content && d.Note == ""
		}},
		{"compression only", "hello\n", "xz", func(d OutputDiff) bool {
			return d.TotalChanges == 0 && strings.Contains(d.Note, "trees are equal")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newFakeBuild(t, "base")
			b.steps.content["base"] = squash("hello\n", "gzip")
			if _, err := b.build(t, t.Context(), Options{}); err != nil {
				t.Fatal(err)
			}
			b.steps.content["base"] = squash(tc.motd, tc.comp)
			_, err := b.check(t)
			de, ok := errors.AsType[*DiffError](err)
			if !ok || len(de.Report.Outputs) != 1 || de.Report.Outputs[0].Name != ims.ArtifactRootfs || !tc.want(de.Report.Outputs[0]) {
				t.Fatalf("check = %v (%+v)", err, de)
			}
		})
	}
}

// TestFakeCheckCancel: a cancelled check stops the rebuild, leaves no
// scratch space and the cache as it was.
func TestFakeCheckCancel(t *testing.T) {
	b := newFakeBuild(t, "slow")
	if _, err := b.build(t, t.Context(), Options{}); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, b.cache.Dir())
	e, ctx, rec, workDir := b.cancelWhenBuilding(t, "slow", Options{Check: true})
	if err := e.Build(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Build() = %v, want context.Canceled", err)
	}
	if got, want := rec.statuses(), (map[string]Status{"image.slow": StatusCancelled}); !mapsEqual(got, want) {
		t.Fatalf("statuses = %v, want %v", got, want)
	}
	if left, _ := os.ReadDir(workDir); len(left) != 0 {
		t.Errorf("work dir not cleaned: %v", left)
	}
	if diff := cmp.Diff(before, snapshot(t, b.cache.Dir())); diff != "" {
		t.Errorf("a cancelled check changed the cache (-before +after):\n%s", diff)
	}
}
