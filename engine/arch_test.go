package engine

import (
	"strings"
	"testing"

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
