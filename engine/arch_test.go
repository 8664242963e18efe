package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imsbuild/imsbuild/builders/binfmt"
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
