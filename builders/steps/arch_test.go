package steps

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imsbuild/imsbuild/builders/binfmt"
	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/spec"
)

// archKeys returns the keys, as JSON, of the prepare, the kiwi image and a
// customize image of a recipe of arch.
func archKeys(t *testing.T, arch string) (prepare, image, custom string) {
	t.Helper()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "config.xml"), []byte("<image/>"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &spec.Recipe{Name: "node", Source: src, Type: "kiwi-ng", Arch: arch, RequireDKMS: true}
	p := &Prepare{Recipe: r, RecipeSource: func(context.Context, *spec.Recipe) (string, error) { return src, nil }}
	results := map[string]*cache.ActionResult{
		"image.base/prepare": {Outputs: map[string]cache.Output{PreparedOutput: {Digest: "sha256:aa"}}},
		"image.base":         {Outputs: map[string]cache.Output{"rootfs": {Digest: "sha256:bb"}}},
	}
	k := keyEnv(results)
	jsonOf := func(key *Key, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := key.Inputs["recipe"]; ok {
			key.Inputs["recipe"] = "sha256:recipe" // a temporary directory's digest
		}
		b, err := json.Marshal(key)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	base := &spec.Image{Label: "base", Name: "base", Arch: arch, Recipe: "node", KernelFileName: "vmlinuz", InitrdFileName: "initrd"}
	child := &spec.Image{Label: "compute", Name: "compute", Arch: arch, From: "base", KernelFileName: "vmlinuz", InitrdFileName: "initrd",
		Customize: []spec.Customize{{Inline: "uname -m", Jail: true}}}
	prepare = jsonOf(p.Key(t.Context(), k))
	image = jsonOf((&Image{Kind: KindKiwi, Image: base, Parent: "image.base/prepare"}).Key(t.Context(), k))
	custom = jsonOf((&Image{Kind: KindCustomize, Image: child, Parent: "image.base"}).Key(t.Context(), k))
	return prepare, image, custom
}

// The keys of x86_64 steps on an x86_64 host are what they were before
// aarch64 builds (pinned as computed then): no emulator, no platform.
func TestHostArchKeysUnchanged(t *testing.T) {
	if binfmt.HostArch() != "x86_64" {
		t.Skipf("pinned for an x86_64 host, this is %s", binfmt.HostArch())
	}
	prepare, image, custom := archKeys(t, "x86_64")
	for _, tc := range []struct{ name, got, want string }{
		{"prepare", prepare, `{"Type":"imsbuild/kiwi-prepare/v3","Attrs":{"arch":"x86_64","linux_distribution":"","profiles":null,"recipe":"node","template":null},"Inputs":{"recipe":"sha256:recipe"},"Tools":{"kiwi-ng":"kiwi-ng 1.0"},"Parent":"","Customize":null}`},
		{"image", image, `{"Type":"imsbuild/kiwi/v4","Attrs":{"arch":"x86_64","initrd_file_name":"initrd","kernel_file_name":"vmlinuz","kernel_parameters":"","name":"base","recipe":"node","squashfs":{"block_size":0,"compression":"","exclude":null,"level":0}},"Inputs":{"prepared":"sha256:aa"},"Tools":{"mksquashfs":"mksquashfs 1.0"},"Parent":"","Customize":null}`},
		{"customize", custom, `{"Type":"imsbuild/customize/v4","Attrs":{"arch":"x86_64","initrd_file_name":"initrd","kernel_file_name":"vmlinuz","kernel_parameters":"","name":"compute","squashfs":{"block_size":0,"compression":"","exclude":null,"level":0}},"Inputs":{"parent.rootfs":"sha256:bb"},"Tools":{"mksquashfs":"mksquashfs 1.0"},"Parent":"image.base","Customize":[{"script":"text:uname -m","jail":true,"network":false}]}`},
	} {
		if tc.got != tc.want {
			t.Errorf("%s key =\n%s\nwant\n%s", tc.name, tc.got, tc.want)
		}
	}
}

// An emulated aarch64 step keys the emulator (version and digest of the
// binary binfmt_misc runs); its recipe and images key the arch.
func TestEmulatedArchKeys(t *testing.T) {
	if binfmt.HostArch() != "x86_64" {
		t.Skipf("emulation of aarch64 on x86_64; this is %s", binfmt.HostArch())
	}
	testutil.RequireQemuUser(t, "aarch64")
	e, err := binfmt.Lookup("aarch64", "")
	if err != nil {
		t.Fatal(err)
	}
	x86 := [3]string{}
	x86[0], x86[1], x86[2] = archKeys(t, "x86_64")
	arm := [3]string{}
	arm[0], arm[1], arm[2] = archKeys(t, "aarch64")
	for i, name := range []string{"prepare", "image", "customize"} {
		if !strings.Contains(arm[i], `"emulator":"`+e.Interpreter+` 1.0"`) || !strings.Contains(arm[i], `"arch":"aarch64"`) {
			t.Errorf("aarch64 %s key = %s, want the arch and the emulator %s", name, arm[i], e.Interpreter)
		}
		if strings.Contains(x86[i], "emulator") {
			t.Errorf("x86_64 %s key = %s, want no emulator", name, x86[i])
		}
	}
}
