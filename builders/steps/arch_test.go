package steps

import (
	"context"
	"encoding/json"
	"errors"
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
// customize image of a recipe of arch; emulated is KeyEnv.Emulated.
func archKeys(t *testing.T, arch string, emulated func(context.Context, string) (bool, error)) (prepare, image, custom string) {
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
	k.Emulated = emulated
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
// aarch64 builds (pinned as computed then): no emulator, no platform; so
// are they with an executor that runs them on amd64 machines.
func TestHostArchKeysUnchanged(t *testing.T) {
	if binfmt.HostArch() != "x86_64" {
		t.Skipf("pinned for an x86_64 host, this is %s", binfmt.HostArch())
	}
	for _, router := range []struct {
		name     string
		emulated func(context.Context, string) (bool, error)
	}{
		{"no executor", nil},
		{"executor with amd64 machines", func(_ context.Context, arch string) (bool, error) { return arch != "x86_64", nil }},
	} {
		prepare, image, custom := archKeys(t, "x86_64", router.emulated)
		for _, tc := range pinnedX86Keys(prepare, image, custom) {
			if tc.got != tc.want {
				t.Errorf("%s: %s key =\n%s\nwant\n%s", router.name, tc.name, tc.got, tc.want)
			}
		}
	}
}

func pinnedX86Keys(prepare, image, custom string) []struct{ name, got, want string } {
	return []struct{ name, got, want string }{
		{"prepare", prepare, `{"Type":"imsbuild/kiwi-prepare/v4","Attrs":{"arch":"x86_64","linux_distribution":"","profiles":null,"recipe":"node","template":null},"Inputs":{"recipe":"sha256:recipe"},"Tools":{"kiwi-ng":"kiwi-ng 1.0"},"Parent":"","Customize":null}`},
		{"image", image, `{"Type":"imsbuild/kiwi/v4","Attrs":{"arch":"x86_64","initrd_file_name":"initrd","kernel_file_name":"vmlinuz","kernel_parameters":"","name":"base","recipe":"node","squashfs":{"block_size":0,"compression":"","exclude":null,"level":0}},"Inputs":{"prepared":"sha256:aa"},"Tools":{"mksquashfs":"mksquashfs 1.0"},"Parent":"","Customize":null}`},
		{"customize", custom, `{"Type":"imsbuild/customize/v4","Attrs":{"arch":"x86_64","initrd_file_name":"initrd","kernel_file_name":"vmlinuz","kernel_parameters":"","name":"compute","squashfs":{"block_size":0,"compression":"","exclude":null,"level":0}},"Inputs":{"parent.rootfs":"sha256:bb"},"Tools":{"mksquashfs":"mksquashfs 1.0"},"Parent":"image.base","Customize":[{"script":"text:uname -m","jail":true,"network":false}]}`},
	}
}

// An emulated aarch64 step keys the emulator (version and digest of the
// binary binfmt_misc runs); its recipe and images key the arch.
func TestEmulatedArchKeys(t *testing.T) {
	e := aarch64Emulator(t)
	x86 := [3]string{}
	x86[0], x86[1], x86[2] = archKeys(t, "x86_64", nil)
	arm := [3]string{}
	arm[0], arm[1], arm[2] = archKeys(t, "aarch64", nil)
	for i, name := range []string{"prepare", "image", "customize"} {
		if !strings.Contains(arm[i], `"emulator":"`+e+`"`) || !strings.Contains(arm[i], `"arch":"aarch64"`) {
			t.Errorf("aarch64 %s key = %s, want the arch and the emulator %s", name, arm[i], e)
		}
		if strings.Contains(x86[i], "emulator") {
			t.Errorf("x86_64 %s key = %s, want no emulator", name, x86[i])
		}
	}
}

// An aarch64 step that an executor runs on an arm64 machine keys no
// emulator: its key is the emulated one without the emulator entry, what
// the arm64 machine computes when it builds the step (binfmt.Emulated is
// false there). A step the executor emulates keys the emulator as one this
// host emulates, and an executor that cannot say fails the key.
func TestRoutedArchKeys(t *testing.T) {
	e := aarch64Emulator(t)
	var asked []string
	native := func(_ context.Context, arch string) (bool, error) { asked = append(asked, arch); return false, nil }
	emulated := func(_ context.Context, arch string) (bool, error) { return arch == "aarch64", nil }
	var here, routedNative, routedEmulated [3]string
	here[0], here[1], here[2] = archKeys(t, "aarch64", nil)
	routedNative[0], routedNative[1], routedNative[2] = archKeys(t, "aarch64", native)
	routedEmulated[0], routedEmulated[1], routedEmulated[2] = archKeys(t, "aarch64", emulated)
	entry := `"emulator":"` + e + `"`
	for i, name := range []string{"prepare", "image", "customize"} {
		if strings.Contains(routedNative[i], "emulator") {
			t.Errorf("native aarch64 %s key = %s, want no emulator", name, routedNative[i])
		}
		if routedNative[i] == here[i] {
			t.Errorf("native aarch64 %s key = emulated key %s, want them different", name, here[i])
		}
		// The emulator sorts before kiwi-ng and mksquashfs.
		if want := strings.Replace(here[i], entry+",", "", 1); routedNative[i] != want {
			t.Errorf("native aarch64 %s key =\n%s\nwant the emulated key without the emulator\n%s", name, routedNative[i], want)
		}
		if routedEmulated[i] != here[i] || !strings.Contains(routedEmulated[i], entry) {
			t.Errorf("routed emulated aarch64 %s key =\n%s\nwant this host's emulated key\n%s", name, routedEmulated[i], here[i])
		}
	}
	if len(asked) != 3 || asked[0] != "aarch64" {
		t.Errorf("Emulated asked for %q, want aarch64 once per step", asked)
	}

	k := keyEnv(nil)
	k.Emulated = func(context.Context, string) (bool, error) { return false, errors.New("nodes: connection refused") }
	img := &spec.Image{Label: "x", Name: "x", Arch: "aarch64", Import: t.TempDir()}
	if _, err := (&Image{Kind: KindImport, Image: img}).Key(t.Context(), k); err == nil || !strings.Contains(err.Error(), "where aarch64 steps run: nodes: connection refused") {
		t.Errorf("Key() with a failing router = %v, want its error", err)
	}
}

// aarch64Emulator returns the identity of this x86_64 host's emulator of
// aarch64.
func aarch64Emulator(t *testing.T) string {
	t.Helper()
	if binfmt.HostArch() != "x86_64" {
		t.Skipf("emulation of aarch64 on x86_64; this is %s", binfmt.HostArch())
	}
	testutil.RequireQemuUser(t, "aarch64")
	e, err := binfmt.Lookup("aarch64", "")
	if err != nil {
		t.Fatal(err)
	}
	id, err := e.Identity(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return id
}
