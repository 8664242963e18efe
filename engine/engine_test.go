package engine

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/builders/steps"
	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/local"
	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/spec"
)

// fixture is a build with a busybox base image, a customized child and a dir publish.
type fixture struct {
	cfg   *spec.Config
	cache *local.Cache
	out   string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "mksquashfs")
	testutil.RequireTool(t, "unsquashfs")
	testutil.RequireTool(t, "bwrap")
	root := testutil.BusyboxRoot(t, true)
	dir := t.TempDir()
	c, err := local.Open(filepath.Join(dir, "cache"))
	if err != nil {
		t.Fatal(err)
	}
	sq := spec.Squashfs{Compression: "zstd", Level: 3, BlockSize: 1 << 20}
	cfg := &spec.Config{
		Dir: dir,
		Images: map[string]*spec.Image{
			"base": {Label: "base", Name: "base", Arch: "x86_64", Import: root, KernelFileName: "vmlinuz", InitrdFileName: "initrd", Squashfs: sq},
			"compute": {Label: "compute", Name: "compute", Arch: "x86_64", From: "base", KernelFileName: "vmlinuz", InitrdFileName: "initrd", Squashfs: sq,
				Customize: []spec.Customize{{Jail: true, Inline: "echo compute > /etc/role\necho hello from the jail\n"}}},
		},
		Publishes: []*spec.Publish{{Kind: "dir", Name: "local", Images: []string{"base", "compute"}, Path: filepath.Join(dir, "out")}},
	}
	cfg.Settings.Cache.Dir = c.Dir()
	return &fixture{cfg: cfg, cache: c, out: filepath.Join(dir, "out")}
}

type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) add(ev Event) { r.mu.Lock(); r.events = append(r.events, ev); r.mu.Unlock() }

// statuses returns step → last non-log status.
func (r *recorder) statuses() map[string]Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string]Status{}
	for _, ev := range r.events {
		if ev.Status != StatusLog && ev.Status != StatusPlanned && ev.Status != StatusStarted {
			m[ev.Step] = ev.Status
		}
	}
	return m
}

func (f *fixture) build(t *testing.T, ctx context.Context, opts Options, targets ...string) (map[string]Status, error) {
	t.Helper()
	rec := &recorder{}
	opts.Events = rec.add
	opts.WorkDir = filepath.Join(f.cache.Dir(), "work", "test")
	e, err := New(f.cfg, f.cache, f.cache.Actions(), opts)
	if err != nil {
		t.Fatal(err)
	}
	err = e.Build(ctx, targets)
	return rec.statuses(), err
}

func TestBuildThenCached(t *testing.T) {
	f := newFixture(t)
	got, err := f.build(t, t.Context(), Options{Jobs: 2})
	if err != nil {
		t.Fatalf("Build() = %v", err)
	}
	want := map[string]Status{"image.base": StatusDone, "image.compute": StatusDone, "publish.dir.local": StatusDone}
	if !mapsEqual(got, want) {
		t.Fatalf("first build statuses = %v, want %v", got, want)
	}
	manifests, _ := filepath.Glob(filepath.Join(f.out, "boot-images", "*", "manifest.json"))
	if len(manifests) != 2 {
		t.Fatalf("published manifests = %v, want 2", manifests)
	}
	got, err = f.build(t, t.Context(), Options{Jobs: 2})
	if err != nil {
		t.Fatalf("second Build() = %v", err)
	}
	want = map[string]Status{"image.base": StatusCached, "image.compute": StatusCached, "publish.dir.local": StatusDone}
	if !mapsEqual(got, want) {
		t.Fatalf("second build statuses = %v, want %v", got, want)
	}
}

func TestChangedScriptRebuildsOnlyChildAndExplains(t *testing.T) {
	f := newFixture(t)
	if _, err := f.build(t, t.Context(), Options{}); err != nil {
		t.Fatal(err)
	}
	f.cfg.Images["compute"].Customize[0].Inline = "echo other > /etc/role\n"
	e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := e.Plan(t.Context(), nil, true)
	if err != nil {
		t.Fatal(err)
	}
	actions := map[string]string{}
	var reasons []string
	for _, p := range plan {
		actions[p.Step] = p.Action
		if p.Step == "image.compute" {
			reasons = p.Reasons
		}
	}
	if actions["image.base"] != ActionCached || actions["image.compute"] != ActionBuild {
		t.Fatalf("Plan() actions = %v, want base cached, compute build", actions)
	}
	if len(reasons) != 1 || !strings.HasPrefix(reasons[0], "customize[0].script changed") {
		t.Fatalf("Plan() reasons for compute = %q, want customize[0].script changed", reasons)
	}
	got, err := f.build(t, t.Context(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got["image.base"] != StatusCached || got["image.compute"] != StatusDone {
		t.Fatalf("statuses = %v, want base cached, compute done", got)
	}
}

func TestEarlyCutoff(t *testing.T) {
	f := newFixture(t)
	if _, err := f.build(t, t.Context(), Options{}); err != nil {
		t.Fatal(err)
	}
	// A file under tmp/ changes the import digest but not the packed rootfs
	// (tmp/* is excluded), so compute keeps its key.
	if err := os.WriteFile(filepath.Join(f.cfg.Images["base"].Import, "tmp", "scratch"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := f.build(t, t.Context(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got["image.base"] != StatusDone || got["image.compute"] != StatusCached {
		t.Fatalf("statuses = %v, want base rebuilt (done) and compute cached", got)
	}
}

func TestFailedScript(t *testing.T) {
	f := newFixture(t)
	f.cfg.Images["compute"].Customize[0].Inline = "echo about to fail\nexit 3\n"
	got, err := f.build(t, t.Context(), Options{})
	var se *StepError
	if !errors.As(err, &se) {
		t.Fatalf("Build() = %v, want a StepError", err)
	}
	if se.Step != "image.compute" || !strings.Contains(se.Error(), "exit status 3") || !strings.Contains(se.LogTail, "about to fail") {
		t.Fatalf("StepError = %+v (tail %q), want image.compute exit status 3 with the log tail", se, se.LogTail)
	}
	if _, err := os.Stat(se.LogPath); err != nil {
		t.Fatalf("log not kept: %v", err)
	}
	want := map[string]Status{"image.base": StatusDone, "image.compute": StatusFailed, "publish.dir.local": StatusSkipped}
	if !mapsEqual(got, want) {
		t.Fatalf("statuses = %v, want %v", got, want)
	}
	entries, err := f.cache.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Result.Step != "image.base" {
		t.Fatalf("cache entries after failure = %d, want only image.base", len(entries))
	}
	if _, err := os.Stat(f.out); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("output dir exists after a failed build: %v", err)
	}
}

func TestKeepGoing(t *testing.T) {
	f := newFixture(t)
	f.cfg.Images["broken"] = &spec.Image{Label: "broken", Name: "broken", Arch: "x86_64", From: "base",
		Squashfs: f.cfg.Images["base"].Squashfs, Customize: []spec.Customize{{Jail: true, Inline: "exit 1\n"}}}
	got, err := f.build(t, t.Context(), Options{Jobs: 1, KeepGoing: true})
	if err == nil {
		t.Fatal("Build() = nil, want the failure of image.broken")
	}
	if got["image.broken"] != StatusFailed || got["image.compute"] != StatusDone || got["publish.dir.local"] != StatusDone {
		t.Fatalf("statuses = %v, want broken failed, compute and publish done", got)
	}
}

func TestTargets(t *testing.T) {
	f := newFixture(t)
	got, err := f.build(t, t.Context(), Options{}, "image.base")
	if err != nil {
		t.Fatal(err)
	}
	if !mapsEqual(got, map[string]Status{"image.base": StatusDone}) {
		t.Fatalf("statuses = %v, want only image.base", got)
	}
	if _, err := f.build(t, t.Context(), Options{}, "image.nope"); !errors.As(err, new(*UnknownTargetError)) || !strings.Contains(err.Error(), `"image.nope"`) {
		t.Fatalf("Build(image.nope) = %v, want unknown target", err)
	}
}

func TestCancelLeavesNothing(t *testing.T) {
	f := newFixture(t)
	f.cfg.Images["compute"].Customize[0].Inline = "echo started\nsleep 3011 & wait\n"
	ctx, cancel := context.WithCancel(t.Context())
	rec := &recorder{}
	e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{WorkDir: filepath.Join(f.cache.Dir(), "work", "t"), Events: func(ev Event) {
		rec.add(ev)
		if ev.Step == "image.compute" && ev.Line == "started" {
			cancel()
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = e.Build(ctx, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Build() = %v, want context.Canceled", err)
	}
	if got := rec.statuses()["image.compute"]; got != StatusCancelled {
		t.Errorf("image.compute status = %q, want %q", got, StatusCancelled)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("cancel took %v", d)
	}
	if procs := testutil.ProcessesMatching(t, "sleep 3011"); len(procs) > 0 {
		t.Fatalf("processes left after cancel: %v", procs)
	}
	left, _ := os.ReadDir(filepath.Join(f.cache.Dir(), "work", "t"))
	if len(left) != 0 {
		t.Fatalf("work dir not cleaned: %v", left)
	}
	entries, _ := f.cache.List(t.Context())
	for _, en := range entries {
		if en.Result.Step == "image.compute" {
			t.Fatal("cancelled step left a cache entry")
		}
	}
}

func TestGraphSelectAndDOT(t *testing.T) {
	cfg := &spec.Config{Images: map[string]*spec.Image{
		"a": {Label: "a", Import: "/x"},
		"b": {Label: "b", From: "a"},
		"c": {Label: "c", From: "b"},
		"d": {Label: "d", Import: "/y"},
	}, Publishes: []*spec.Publish{{Kind: "dir", Name: "out", Images: []string{"c"}}}}
	g, err := NewGraph(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		targets []string
		want    []string
	}{
		{nil, []string{"image.a", "image.b", "image.c", "image.d", "publish.dir.out"}},
		{[]string{"image.b"}, []string{"image.a", "image.b"}},
		{[]string{"d"}, []string{"image.d"}},
		{[]string{"publish.dir.out"}, []string{"image.a", "image.b", "image.c", "publish.dir.out"}},
	}
	for _, tc := range tests {
		steps, err := g.Select(tc.targets)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range steps {
			got = append(got, s.ID)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Select(%v) = %v, want %v", tc.targets, got, tc.want)
		}
	}
	var b strings.Builder
	if err := g.WriteDOT(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"image.b" -> "image.c";`) {
		t.Errorf("WriteDOT() = %s, want edge b -> c", b.String())
	}
}

func TestDiffPreimages(t *testing.T) {
	a := []byte(`{"attrs":{"name":"x","squashfs":{"level":3}},"inputs":{"import":"sha256:aaaa"}}`)
	b := []byte(`{"attrs":{"name":"x","squashfs":{"level":5}},"inputs":{"import":"sha256:aaaa","ca_certificates[0]":"sha256:bb","repository.debian.metadata":"sha256:cc"}}`)
	got := DiffPreimages(a, b)
	want := []string{"ca_certificates[0] added", "repository debian metadata added", "squashfs.level changed (3 → 5)"}
	if !slices.Equal(got, want) {
		t.Fatalf("DiffPreimages() = %q, want %q", got, want)
	}
}

func mapsEqual(a, b map[string]Status) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

var _ cache.Store = (*local.Cache)(nil)

func TestEnvAllowlistAndSalt(t *testing.T) {
	f := newFixture(t)
	f.cfg.Settings.Cache.Env = []string{"SITE_NAME"}
	f.cfg.Images["compute"].Customize[0].Inline = "echo \"site=$SITE_NAME other=$OTHER_VAR\"\n"
	keyOf := func(environ []string, salt string) (string, []string) {
		t.Helper()
		f.cfg.Settings.Cache.Salt = salt
		rec := &recorder{}
		e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{Environ: environ, Events: rec.add, WorkDir: filepath.Join(f.cache.Dir(), "work", "env")})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Build(t.Context(), []string{"image.compute"}); err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, ev := range rec.events {
			if ev.Step == "image.compute" && strings.HasPrefix(ev.Line, "site=") {
				lines = append(lines, ev.Line)
			}
		}
		return e.key("image.compute"), lines
	}
	k1, lines := keyOf([]string{"SITE_NAME=a", "OTHER_VAR=x"}, "")
	if len(lines) != 1 || lines[0] != "site=a other=" {
		t.Fatalf("script saw %q, want only the allowlisted variable (site=a other=)", lines)
	}
	if k2, _ := keyOf([]string{"SITE_NAME=a", "OTHER_VAR=y"}, ""); k2 != k1 {
		t.Errorf("a variable outside the allowlist changed the key")
	}
	if k3, _ := keyOf([]string{"SITE_NAME=b"}, ""); k3 == k1 {
		t.Errorf("an allowlisted variable did not change the key")
	}
	if k4, _ := keyOf([]string{"SITE_NAME=a"}, "site-2026"); k4 == k1 {
		t.Errorf("the cache salt did not change the key")
	}
}

func asStepError(err error, target **StepError) bool { return errors.As(err, target) }

// TestSourceDateEpochInvalid: a SOURCE_DATE_EPOCH that is not a
// non-negative integer is an error, never ignored or half-parsed.
func TestSourceDateEpochInvalid(t *testing.T) {
	f := newFakeBuild(t, "base")
	for _, tc := range []struct {
		value string
		want  int64
		set   bool
		ok    bool
	}{
		{"1700000000", 1700000000, true, true},
		{"0", 0, true, true},
		{"", 0, false, true},
		{"12abc", 0, false, false},
		{"-1", 0, false, false},
		{"1.5", 0, false, false},
		{" 12", 0, false, false},
		{"99999999999999999999", 0, false, false},
	} {
		t.Run(tc.value, func(t *testing.T) {
			e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{Environ: []string{"SOURCE_DATE_EPOCH=" + tc.value}})
			if !tc.ok {
				if err == nil || !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
					t.Fatalf("New(SOURCE_DATE_EPOCH=%q) = %v, want an error naming it", tc.value, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(SOURCE_DATE_EPOCH=%q) = %v", tc.value, err)
			}
			if n, set := e.sourceDateEpoch(); n != tc.want || set != tc.set {
				t.Fatalf("sourceDateEpoch() = %d, %t, want %d, %t", n, set, tc.want, tc.set)
			}
		})
	}
}

// TestCleanupFailureLogged: a failed cleanup goes to Options.Logger, not to
// the process's stderr behind the caller's back.
func TestCleanupFailureLogged(t *testing.T) {
	var buf bytes.Buffer
	e, err := New(newFakeBuild(t, "base").cfg, nil, nil, Options{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	removeAll(e.opts.Logger, dir+"/.") // RemoveAll refuses a path ending in "."
	if !strings.Contains(buf.String(), "cleanup") || !strings.Contains(buf.String(), dir) {
		t.Fatalf("logger got %q, want the cleanup failure of %s", buf.String(), dir)
	}
}

// failingLastKey is an action cache whose SetLastKey always fails.
type failingLastKey struct{ cache.LockingActionCache }

func (failingLastKey) SetLastKey(context.Context, string, string, []byte) error {
	return errors.New("disk full")
}

// TestSetLastKeyFailureLogged: a failure to record the last key does not
// fail the build (it only feeds plan --explain) but is logged, not dropped.
func TestSetLastKeyFailureLogged(t *testing.T) {
	f := newFakeBuild(t, "base")
	var buf bytes.Buffer
	e, err := New(f.cfg, f.cache, failingLastKey{f.cache.Actions()}, Options{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	e.newOp = func(s *Step) steps.Op { return &fakeOp{f: f.steps, s: s} }
	if err := e.Build(t.Context(), []string{"image.base"}); err != nil {
		t.Fatalf("Build() = %v", err)
	}
	if log := buf.String(); !strings.Contains(log, "record last key") || !strings.Contains(log, "step=image.base") || !strings.Contains(log, "disk full") {
		t.Fatalf("logger got %q, want the SetLastKey failure of image.base", log)
	}
}

// TestSandboxErrorNotDoubled: a sandbox that cannot be opened fails the
// step with the sandbox package's own message, not "sandbox: sandbox: …".
func TestSandboxErrorNotDoubled(t *testing.T) {
	f := newFixture(t)
	rec := &recorder{}
	e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{Events: rec.add, WorkDir: filepath.Join(f.cache.Dir(), "work", "t"),
		NewSandbox: func() (sandbox.Sandbox, error) { return sandbox.Open("nope") }})
	if err != nil {
		t.Fatal(err)
	}
	err = e.Build(t.Context(), []string{"image.compute"})
	if err == nil || !strings.Contains(err.Error(), `unknown backend "nope"`) || strings.Contains(err.Error(), "sandbox: sandbox") {
		t.Fatalf("Build() = %v, want the sandbox's error once", err)
	}
}
