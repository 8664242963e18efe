package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/builders/steps"
	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/local"
	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/spec"
)

// The tests in this file run the scheduler, keys and cache with fake
// steps: no root, sandbox or mksquashfs, so they run under -short.

// fakeSteps makes and records the fake ops of a build.
type fakeSteps struct {
	mu      sync.Mutex
	log     []string          // "start <id>" and "end <id>", in order
	builds  map[string]int    // step id → builds
	version map[string]string // image label → a key attribute (changing it changes the key)
	content map[string]string // image label → its rootfs bytes (default: the label)
	fail    map[string]bool   // image labels whose build fails
	output  map[string]string // image label → its output's name (default rootfs)
	// wait, when set for a label, runs in its build before it ends (a
	// barrier or a block until cancelled).
	wait             map[string]func(ctx context.Context) error
	running, maxRuns int
}

func newFakeSteps() *fakeSteps {
	return &fakeSteps{builds: map[string]int{}, version: map[string]string{}, content: map[string]string{},
		fail: map[string]bool{}, output: map[string]string{}, wait: map[string]func(context.Context) error{}}
}

type fakeOp struct {
	f *fakeSteps
	s *Step
}

type fakeAttrs struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

func (o *fakeOp) Key(ctx context.Context, k steps.KeyEnv) (*steps.Key, error) {
	o.f.mu.Lock()
	defer o.f.mu.Unlock()
	key := &steps.Key{Type: "imsbuild/fake/v1", Attrs: fakeAttrs{Name: o.s.Image.Label, Version: o.f.version[o.s.Image.Label]}, Inputs: map[string]string{}}
	// As an image's key, a child's holds its parent's output digests,
	// not the parent's key.
	for _, d := range o.s.Deps {
		r := k.Result(d.ID)
		if r == nil {
			return nil, steps.ErrParentPending
		}
		key.Parent = d.ID
		for name, out := range r.Outputs {
			key.Inputs["parent."+name] = string(out.Digest)
		}
	}
	return key, nil
}

func (o *fakeOp) Build(ctx context.Context, env steps.Env) (*cache.ActionResult, error) {
	f, label := o.f, o.s.Image.Label
	f.mu.Lock()
	f.log = append(f.log, "start "+o.s.ID)
	f.builds[o.s.ID]++
	f.running++
	f.maxRuns = max(f.maxRuns, f.running)
	wait, fail := f.wait[label], f.fail[label]
	content, ok := f.content[label]
	if !ok {
		content = label
	}
	outName := cmp.Or(f.output[label], ims.ArtifactRootfs)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.running--
		f.log = append(f.log, "end "+o.s.ID)
		f.mu.Unlock()
	}()
	for _, d := range o.s.Deps {
		if env.Result(d.ID) == nil {
			return nil, fmt.Errorf("%s built before its parent %s", o.s.ID, d.ID)
		}
	}
	fmt.Fprintf(env.Log, "building %s\n", o.s.ID)
	if wait != nil {
		if err := wait(ctx); err != nil {
			return nil, err
		}
	}
	if fail {
		return nil, errors.New("fake failure")
	}
	path := filepath.Join(env.Work, "rootfs")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return nil, err
	}
	d, size, err := env.Store.PutFile(ctx, path)
	if err != nil {
		return nil, err
	}
	return &cache.ActionResult{Outputs: map[string]cache.Output{outName: {Digest: d, Size: size}}}, nil
}

// fakeBuild is a build graph of fake steps: images named by label, each
// with an optional parent.
type fakeBuild struct {
	cfg   *spec.Config
	cache *local.Cache
	steps *fakeSteps
}

// newFakeBuild declares images "label" or "label<parent" (a child of parent).
func newFakeBuild(t *testing.T, images ...string) *fakeBuild {
	t.Helper()
	dir := t.TempDir()
	c, err := local.Open(filepath.Join(dir, "cache"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &spec.Config{Dir: dir, Images: map[string]*spec.Image{}}
	for _, im := range images {
		label, parent, _ := strings.Cut(im, "<")
		img := &spec.Image{Label: label, Name: label, From: parent}
		if parent == "" {
			img.Import = filepath.Join(dir, "never-read") // the fake op never reads it
		}
		cfg.Images[label] = img
	}
	cfg.Settings.Cache.Dir = c.Dir()
	return &fakeBuild{cfg: cfg, cache: c, steps: newFakeSteps()}
}

func (b *fakeBuild) engine(t *testing.T, opts Options) (*Engine, *recorder) {
	t.Helper()
	rec := &recorder{}
	if opts.Events == nil {
		opts.Events = rec.add
	}
	e, err := New(b.cfg, b.cache, b.cache.Actions(), opts)
	if err != nil {
		t.Fatal(err)
	}
	e.newOp = func(s *Step) steps.Op { return &fakeOp{f: b.steps, s: s} }
	return e, rec
}

func (b *fakeBuild) build(t *testing.T, ctx context.Context, opts Options, targets ...string) (map[string]Status, error) {
	t.Helper()
	e, rec := b.engine(t, opts)
	err := e.Build(ctx, targets)
	return rec.statuses(), err
}

// until returns a wait that returns once entry is in the log.
func (f *fakeSteps) until(entry string) func(context.Context) error {
	return func(ctx context.Context) error {
		for f.index(entry) < 0 {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			time.Sleep(time.Millisecond)
		}
		return nil
	}
}

// index returns the position of entry in the build log, -1 if absent.
func (f *fakeSteps) index(entry string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Index(f.log, entry)
}

func TestFakeBuildThenCached(t *testing.T) {
	b := newFakeBuild(t, "base", "compute<base", "gpu<compute", "other")
	got, err := b.build(t, t.Context(), Options{Jobs: 4})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Status{"image.base": StatusDone, "image.compute": StatusDone, "image.gpu": StatusDone, "image.other": StatusDone}
	if !mapsEqual(got, want) {
		t.Fatalf("first build: statuses = %v, want %v", got, want)
	}
	// A parent ends before its child starts.
	for _, edge := range [][2]string{{"image.base", "image.compute"}, {"image.compute", "image.gpu"}} {
		if end, start := b.steps.index("end "+edge[0]), b.steps.index("start "+edge[1]); end < 0 || start < end {
			t.Errorf("build log %q: %s started before %s ended", b.steps.log, edge[1], edge[0])
		}
	}
	got, err = b.build(t, t.Context(), Options{Jobs: 4})
	if err != nil {
		t.Fatal(err)
	}
	for id := range want {
		want[id] = StatusCached
	}
	if !mapsEqual(got, want) {
		t.Fatalf("second build: statuses = %v, want all cached", got)
	}
	for id, n := range b.steps.builds {
		if n != 1 {
			t.Errorf("%s built %d times, want once", id, n)
		}
	}
}

// TestFakeJobsBound: -j 2 runs two steps at a time, never more. Each build
// waits (up to a deadline) until two run, so a scheduler that ran them one
// by one fails too.
func TestFakeJobsBound(t *testing.T) {
	const jobs = 2
	labels := []string{"a", "b", "c", "d", "e", "f"}
	b := newFakeBuild(t, labels...)
	for _, l := range labels {
		b.steps.wait[l] = func(ctx context.Context) error {
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) {
				b.steps.mu.Lock()
				n := b.steps.running
				b.steps.mu.Unlock()
				if n >= jobs {
					return nil
				}
				time.Sleep(time.Millisecond)
			}
			return nil
		}
	}
	if _, err := b.build(t, t.Context(), Options{Jobs: jobs}); err != nil {
		t.Fatal(err)
	}
	if b.steps.maxRuns != jobs {
		t.Fatalf("at most %d steps ran at once, want %d (-j %d)", b.steps.maxRuns, jobs, jobs)
	}
}

// TestFakeFailureStopsOrKeepsGoing: a failure skips its dependents; without
// --keep-going no step starts after it, with it independent steps go on.
func TestFakeFailureStopsOrKeepsGoing(t *testing.T) {
	for _, keepGoing := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep-going=%v", keepGoing), func(t *testing.T) {
			// broken fails while first runs; second (after first) starts
			// only after the failure.
			b := newFakeBuild(t, "broken", "child<broken", "first", "second<first")
			b.steps.fail["broken"] = true
			// broken fails only once first runs: with -j 2 the scheduler
			// may start broken alone first, and a failure before first
			// started would rightly leave first skipped.
			b.steps.wait["broken"] = b.steps.until("start image.first")
			b.steps.wait["first"] = b.steps.until("end image.broken")
			got, err := b.build(t, t.Context(), Options{Jobs: 2, KeepGoing: keepGoing})
			var se *StepError
			if !errors.As(err, &se) || se.Step != "image.broken" || !strings.Contains(se.LogTail, "building image.broken") {
				t.Fatalf("Build() = %v, want the StepError of image.broken with its log tail", err)
			}
			want := map[string]Status{"image.broken": StatusFailed, "image.child": StatusSkipped, "image.first": StatusDone, "image.second": StatusSkipped}
			if keepGoing {
				want["image.second"] = StatusDone
			}
			if !mapsEqual(got, want) {
				t.Fatalf("statuses = %v, want %v", got, want)
			}
			if n := b.steps.builds["image.child"]; n != 0 {
				t.Errorf("the child of a failed step was built %d times", n)
			}
			entries, err := b.cache.List(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			for _, en := range entries {
				if en.Result.Step == "image.broken" {
					t.Errorf("a failed step left a cache entry")
				}
			}
		})
	}
}

// cancelWhenBuilding makes b's engine with opts, its step image.<label>
// blocking until its ctx ends, and a ctx that is cancelled once that step
// says it is building. It returns the events and the work dir to check
// what the cancel left.
func (b *fakeBuild) cancelWhenBuilding(t *testing.T, label string, opts Options) (*Engine, context.Context, *recorder, string) {
	t.Helper()
	b.steps.wait[label] = func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	opts.WorkDir = filepath.Join(t.TempDir(), "work")
	rec := &recorder{}
	opts.Events = func(ev Event) {
		rec.add(ev)
		if ev.Step == "image."+label && ev.Line == "building image."+label {
			cancel()
		}
	}
	e, _ := b.engine(t, opts)
	return e, ctx, rec, opts.WorkDir
}

// TestFakeCancel: cancelling kills the running step (cancelled, no cache
// entry, no scratch left) and skips those that wait.
func TestFakeCancel(t *testing.T) {
	b := newFakeBuild(t, "slow", "child<slow")
	e, ctx, rec, workDir := b.cancelWhenBuilding(t, "slow", Options{})
	err := e.Build(ctx, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Build() = %v, want context.Canceled", err)
	}
	want := map[string]Status{"image.slow": StatusCancelled, "image.child": StatusSkipped}
	if got := rec.statuses(); !mapsEqual(got, want) {
		t.Fatalf("statuses = %v, want %v", got, want)
	}
	if left, _ := os.ReadDir(workDir); len(left) != 0 {
		t.Errorf("work dir not cleaned: %v", left)
	}
	if entries, _ := b.cache.List(t.Context()); len(entries) != 0 {
		t.Errorf("a cancelled build left %d cache entries", len(entries))
	}
}

// TestFakeEarlyCutoff: a parent rebuilt byte-identical keeps its child
// cached; different bytes rebuild the child.
func TestFakeEarlyCutoff(t *testing.T) {
	b := newFakeBuild(t, "base", "compute<base")
	if _, err := b.build(t, t.Context(), Options{}); err != nil {
		t.Fatal(err)
	}
	b.steps.version["base"] = "2" // a new key, the same output
	got, err := b.build(t, t.Context(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := (map[string]Status{"image.base": StatusDone, "image.compute": StatusCached}); !mapsEqual(got, want) {
		t.Fatalf("same output: statuses = %v, want %v", got, want)
	}
	b.steps.version["base"], b.steps.content["base"] = "3", "other bytes"
	got, err = b.build(t, t.Context(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := (map[string]Status{"image.base": StatusDone, "image.compute": StatusDone}); !mapsEqual(got, want) {
		t.Fatalf("new output: statuses = %v, want %v", got, want)
	}
}

// TestFakeTargets: a target builds itself and what it needs, nothing else;
// an unknown target is an *UnknownTargetError before anything runs.
func TestFakeTargets(t *testing.T) {
	b := newFakeBuild(t, "base", "compute<base", "other")
	got, err := b.build(t, t.Context(), Options{}, "compute") // a bare label
	if err != nil {
		t.Fatal(err)
	}
	if want := (map[string]Status{"image.base": StatusDone, "image.compute": StatusDone}); !mapsEqual(got, want) {
		t.Fatalf("statuses = %v, want %v", got, want)
	}
	got, err = b.build(t, t.Context(), Options{}, "image.nope")
	var ute *UnknownTargetError
	if !errors.As(err, &ute) || ute.Target != "image.nope" || !slices.Contains(ute.Known, "image.other") {
		t.Fatalf("Build(image.nope) = %v, want an UnknownTargetError listing the steps", err)
	}
	if len(got) != 0 || b.steps.builds["image.other"] != 0 {
		t.Fatalf("an unknown target ran steps: %v", got)
	}
}

// TestFakePlan: plan says what is cached and, for a child whose parent
// must build first, why its key is not known yet; explain names the
// attribute that changed.
func TestFakePlan(t *testing.T) {
	b := newFakeBuild(t, "base", "compute<base")
	plan := func() map[string]PlanEntry {
		t.Helper()
		e, _ := b.engine(t, Options{})
		entries, err := e.Plan(t.Context(), nil, true)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]PlanEntry{}
		for _, pe := range entries {
			m[pe.Step] = pe
		}
		return m
	}
	p := plan()
	if p["image.base"].Action != ActionBuild || p["image.compute"].Action != ActionBuild ||
		!slices.Equal(p["image.compute"].Reasons, []string{"parent image.base is built first; the key depends on its output"}) {
		t.Fatalf("plan before a build = %+v", p)
	}
	if _, err := b.build(t, t.Context(), Options{}); err != nil {
		t.Fatal(err)
	}
	if p = plan(); p["image.base"].Action != ActionCached || p["image.compute"].Action != ActionCached {
		t.Fatalf("plan after a build = %+v, want all cached", p)
	}
	b.steps.version["base"] = "2"
	if p = plan(); p["image.base"].Action != ActionBuild || !slices.Equal(p["image.base"].Reasons, []string{"version changed ( → 2)"}) {
		t.Fatalf("plan after a change = %+v, want base to build because version changed", p)
	}
}
