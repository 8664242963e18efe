package engine

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/imsbuild/imsbuild/builders/binfmt"
	"github.com/imsbuild/imsbuild/executor"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// One recipe, an x86_64 and an aarch64 image of it: each image prepares the
// recipe for its own arch, under its own key.
func TestKiwiImageArchOverridesRecipe(t *testing.T) {
	testutil.RequireQemuUser(t, "aarch64") // the aarch64 key names the emulator
	srv, _ := repoServer(t)
	f := kiwiFixture(t, srv.URL+"/debian")
	base := f.cfg.Images["base"]
	arm := *base
	arm.Label, arm.Name, arm.Arch = "arm", "arm", "aarch64"
	f.cfg.Images["arm"] = &arm
	e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := e.Plan(t.Context(), []string{"image.base", "image.arm"}, false)
	if err != nil {
		t.Fatal(err)
	}
	prepares := map[string]string{}
	for _, p := range plan {
		for _, r := range p.Reasons {
			if strings.HasPrefix(r, "kiwi prepare runs") {
				prepares[p.Step] = r
			}
		}
	}
	if len(prepares) != 2 || prepares["image.base"] == prepares["image.arm"] {
		t.Fatalf("prepares of image.base and image.arm = %q, want two different keys", prepares)
	}
	if f.cfg.Recipes["node"].Arch != "x86_64" {
		t.Errorf("recipe arch = %q after planning, want x86_64 kept", f.cfg.Recipes["node"].Arch)
	}
}

// An aarch64 image on an x86_64 host: its prepare runs kiwi with
// --target-arch aarch64 after making sure of the emulator, and says so in
// its log; its customize too; a second build is all cached.
func TestKiwiEmulatedImage(t *testing.T) {
	testutil.RequireRoot(t)
	if binfmt.HostArch() != "x86_64" {
		t.Skipf("emulates aarch64 on x86_64; this is %s", binfmt.HostArch())
	}
	testutil.RequireQemuUser(t, "aarch64")
	runs := testutil.FakeKiwi(t)
	srv, _ := repoServer(t)
	f := kiwiFixture(t, srv.URL+"/debian")
	f.cfg.Recipes["node"].Arch = "aarch64"
	f.cfg.Images["base"].Arch = "aarch64"
	f.cfg.Images["compute"].Arch = "aarch64"
	opts := Options{WorkDir: filepath.Join(f.cache.Dir(), "work", "test")}
	e, err := New(f.cfg, f.cache, f.cache.Actions(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Build(t.Context(), []string{"image.compute"}); err != nil {
		t.Fatalf("Build() = %v", err)
	}
	for step, want := range map[string][]string{
		"image.base.prepare": {"aarch64 binaries run emulated by ", "fake kiwi: --target-arch aarch64"},
		"image.compute":      {"aarch64 binaries run emulated by "},
	} {
		log, _ := os.ReadFile(filepath.Join(e.opts.LogDir, step+".log"))
		for _, w := range want {
			if !strings.Contains(string(log), w) {
				t.Errorf("%s log lacks %q:\n%s", step, w, log)
			}
		}
	}
	got, err := f.build(t, t.Context(), Options{}, "image.compute")
	if err != nil || got["image.base/prepare"] != StatusCached || got["image.compute"] != StatusCached || runs() != 1 {
		t.Errorf("second build = %v, %v with %d kiwi runs; want all cached, 1 run", got, err, runs())
	}
}

// archRouter is an executor that routes steps by arch: native says which
// arches its machines run natively.
type archRouter struct {
	executor.Executor
	native map[string]bool

	mu    sync.Mutex
	asked []string
}

func (r *archRouter) Native(_ context.Context, arch string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked = append(r.asked, arch)
	return r.native[arch], nil
}

// With an executor that routes steps by arch, an aarch64 step keys the
// emulator only when the executor emulates it: routed to an arm64 machine
// its key differs from the emulated one. x86_64 keys stay as without an
// executor.
func TestRemoteArchKeys(t *testing.T) {
	if binfmt.HostArch() != "x86_64" {
		t.Skipf("emulates aarch64 on x86_64; this is %s", binfmt.HostArch())
	}
	testutil.RequireQemuUser(t, "aarch64")
	srv, _ := repoServer(t)
	f := kiwiFixture(t, srv.URL+"/debian")
	arm := *f.cfg.Images["base"]
	arm.Label, arm.Name, arm.Arch = "arm", "arm", "aarch64"
	f.cfg.Images["arm"] = &arm
	prepares := func(x executor.Executor) map[string]string {
		t.Helper()
		opts := Options{}
		if x != nil {
			opts.Executor, opts.Remote = x, &RemoteCache{Store: f.cache, URL: "s3://fake/cache"}
		}
		e, err := New(f.cfg, f.cache, f.cache.Actions(), opts)
		if err != nil {
			t.Fatal(err)
		}
		plan, err := e.Plan(t.Context(), []string{"image.base", "image.arm"}, false)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, p := range plan {
			for _, r := range p.Reasons {
				if strings.HasPrefix(r, "kiwi prepare runs") {
					got[p.Step] = r
				}
			}
		}
		if len(got) != 2 {
			t.Fatalf("plan = %+v, want the prepares of image.base and image.arm", plan)
		}
		return got
	}
	here := prepares(nil)
	emulating := &archRouter{native: map[string]bool{"x86_64": true}}
	nativeArm := &archRouter{native: map[string]bool{"x86_64": true, "aarch64": true}}
	if got := prepares(emulating); !maps.Equal(got, here) {
		t.Errorf("prepares routed to amd64 machines = %q, want this host's %q", got, here)
	}
	got := prepares(nativeArm)
	if got["image.base"] != here["image.base"] {
		t.Errorf("x86_64 prepare routed natively = %q, want this host's %q", got["image.base"], here["image.base"])
	}
	if got["image.arm"] == here["image.arm"] {
		t.Errorf("aarch64 prepare routed to arm64 = %q, want a key other than the emulated %q", got["image.arm"], here["image.arm"])
	}
	if !slices.Contains(nativeArm.asked, "aarch64") || !slices.Contains(nativeArm.asked, "x86_64") {
		t.Errorf("router asked for %q, want x86_64 and aarch64", nativeArm.asked)
	}
}

// An aarch64 build through an executor: every step's Run names its arch,
// and the pod (this x86_64 host, emulating) keys the steps as the
// orchestrator did when the executor says it emulates them. Told they run
// on an arm64 machine, the orchestrator keys them natively and this pod,
// which emulates, refuses the key: the key follows the route.
func TestRemoteArchRouting(t *testing.T) {
	testutil.RequireRoot(t)
	if binfmt.HostArch() != "x86_64" {
		t.Skipf("emulates aarch64 on x86_64; this is %s", binfmt.HostArch())
	}
	testutil.RequireQemuUser(t, "aarch64")
	testutil.FakeKiwi(t)
	srv, _ := repoServer(t)
	f := kiwiFixture(t, srv.URL+"/debian")
	f.cfg.Recipes["node"].Arch = "aarch64"
	f.cfg.Images["base"].Arch = "aarch64"
	f.cfg.Images["compute"].Arch = "aarch64"
	b := &fakeBuild{cfg: f.cfg, cache: f.cache, steps: newFakeSteps()}
	build := func(native bool) (*podExecutor, error) {
		t.Helper()
		x := &podExecutor{t: t, b: b, real: true}
		r := &archRouter{Executor: x, native: map[string]bool{"x86_64": true, "aarch64": native}}
		e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{WorkDir: t.TempDir(), StateDir: t.TempDir(),
			Executor: r, Remote: &RemoteCache{Store: f.cache, URL: "s3://fake/cache"}})
		if err != nil {
			t.Fatal(err)
		}
		return x, e.Build(t.Context(), []string{"image.compute"})
	}
	x, err := build(false)
	if err != nil {
		t.Fatalf("emulated Build() = %v", err)
	}
	var got []string
	for _, s := range x.runs {
		got = append(got, s.Step+" "+s.Arch)
	}
	want := []string{"image.base/prepare aarch64", "image.base aarch64", "image.compute aarch64"}
	if !slices.Equal(got, want) {
		t.Errorf("Runs = %q, want %q", got, want)
	}
	_, err = build(true)
	var mismatch *KeyMismatchError
	if !errors.As(err, &mismatch) || mismatch.Step != "image.base/prepare" {
		t.Errorf("Build() routed to arm64 with an emulating pod = %v, want the pod's KeyMismatchError for image.base/prepare", err)
	}
}
