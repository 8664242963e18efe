package spec

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestImageDefaults(t *testing.T) {
	tests := []struct {
		name    string
		build   string
		want    map[string]string // label → arch
		kernels map[string]string // label → kernel_file_name
	}{
		{
			name: "inherit from recipe and parent",
			build: `
recipe "arm" {
  source = "s3://ims/recipes/1/recipe.tgz"
  arch   = "aarch64"
}
image "base" {
  recipe = recipe.arm
}
image "child" {
  from = image.grand
}
image "grand" {
  from = image.base
}
image "imported" {
  import = "ims://images/abc"
}
image "explicit" {
  import = "root.tar"
  arch   = "aarch64"
}
image "named" {
  import           = "root.tar"
  arch             = "aarch64"
  kernel_file_name = "vmlinuz"
}
`,
			want: map[string]string{"base": "aarch64", "child": "aarch64", "grand": "aarch64", "imported": "x86_64", "explicit": "aarch64", "named": "aarch64"},
			// IMS's default kernel name by arch; a given one stays.
			kernels: map[string]string{"base": "Image", "child": "Image", "grand": "Image", "imported": "vmlinuz", "explicit": "Image", "named": "vmlinuz"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"build.ims.hcl": tc.build})
			cfg, diags := Load(dir, Options{})
			if diags.HasErrors() {
				t.Fatalf("Load() diagnostics: %v", diags)
			}
			got := map[string]string{}
			for label, img := range cfg.Images {
				got[label] = img.Arch
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("image arches mismatch (-want +got):\n%s", diff)
			}
			kernels := map[string]string{}
			for label, img := range cfg.Images {
				kernels[label] = img.KernelFileName
			}
			if diff := cmp.Diff(tc.kernels, kernels); diff != "" {
				t.Errorf("kernel_file_name mismatch (-want +got):\n%s", diff)
			}
			if src := cfg.Recipes["arm"].Source; src != "s3://ims/recipes/1/recipe.tgz" {
				t.Errorf("recipe source = %q, want the URL kept", src)
			}
			if imp := cfg.Images["imported"].Import; imp != "ims://images/abc" {
				t.Errorf("import = %q, want the URL kept", imp)
			}
		})
	}
}

// An image made from a parent takes the parent's kernel_parameters unless
// it sets its own; an empty string is none of its own.
func TestKernelParametersInherit(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"build.ims.hcl": `
image "base" {
  import            = "root.tar"
  kernel_parameters = "console=ttyS0"
}
image "grandchild" {
  from = image.child
}
image "child" {
  from = image.base
}
image "own" {
  from              = image.base
  kernel_parameters = "quiet"
}
image "empty" {
  from              = image.base
  kernel_parameters = ""
}
image "below_empty" {
  from = image.empty
}
image "plain" {
  import = "root.tar"
}
`})
	cfg, diags := Load(dir, Options{})
	if diags.HasErrors() {
		t.Fatalf("Load() diagnostics: %v", diags)
	}
	got := map[string]string{}
	for label, img := range cfg.Images {
		got[label] = img.KernelParameters
	}
	want := map[string]string{"base": "console=ttyS0", "child": "console=ttyS0", "grandchild": "console=ttyS0",
		"own": "quiet", "empty": "console=ttyS0", "below_empty": "console=ttyS0", "plain": ""}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("kernel_parameters mismatch (-want +got):\n%s", diff)
	}
}

// require_dkms of a recipe is true unless it says otherwise, as in IMS.
func TestRecipeRequireDKMS(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"build.ims.hcl": `
recipe "plain" {
  source = "s3://ims/recipes/1/recipe.tgz"
}
recipe "nodkms" {
  source       = "s3://ims/recipes/2/recipe.tgz"
  require_dkms = false
}
`})
	cfg, diags := Load(dir, Options{})
	if diags.HasErrors() {
		t.Fatalf("Load() diagnostics: %v", diags)
	}
	if !cfg.Recipes["plain"].RequireDKMS || cfg.Recipes["nodkms"].RequireDKMS {
		t.Errorf("require_dkms = %t, %t; want true by default and false when set so",
			cfg.Recipes["plain"].RequireDKMS, cfg.Recipes["nodkms"].RequireDKMS)
	}
}
