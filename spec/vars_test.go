package spec

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imsbuild/imsbuild/internal/testutil"
)

// writeFiles writes name → content files under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	testutil.WriteFiles(t, dir, files, 0o644)
}

const precedenceBuild = `
variable "release" {
  type    = string
  default = "bookworm"
}
variable "profiles" {
  type    = list(string)
  default = ["base"]
}
variable "level" {
  type    = number
  default = 3
}
recipe "node" {
  source   = "recipes/node"
  profiles = var.profiles
}
image "base" {
  recipe = recipe.node
  name   = "node-${var.release}"
  squashfs {
    level = var.level
  }
}
`

func TestVariablePrecedence(t *testing.T) {
	tests := []struct {
		name         string
		env          []string
		varFiles     map[string]string // in name order
		vars         []string
		wantName     string
		wantProfiles []string
		wantLevel    int
	}{
		{name: "defaults", wantName: "node-bookworm", wantProfiles: []string{"base"}, wantLevel: 3},
		{
			name:     "env over default",
			env:      []string{"IMSBUILD_VAR_release=trixie", `IMSBUILD_VAR_profiles=["a", "b"]`, "IMSBUILD_VAR_level=5"},
			wantName: "node-trixie", wantProfiles: []string{"a", "b"}, wantLevel: 5,
		},
		{
			name:     "var file over env",
			env:      []string{"IMSBUILD_VAR_release=trixie", "IMSBUILD_VAR_level=5"},
			varFiles: map[string]string{"1.imsvars.hcl": `release = "sid"`},
			wantName: "node-sid", wantProfiles: []string{"base"}, wantLevel: 5,
		},
		{
			name: "later var file wins",
			varFiles: map[string]string{
				"1.imsvars.hcl": "release = \"sid\"\nlevel = 7\n",
				"2.imsvars.hcl": `release = "forky"`,
			},
			wantName: "node-forky", wantProfiles: []string{"base"}, wantLevel: 7,
		},
		{
			name:     "var flag over var file and env",
			env:      []string{"IMSBUILD_VAR_release=trixie"},
			varFiles: map[string]string{"1.imsvars.hcl": `release = "sid"`},
			vars:     []string{"release=flag", `profiles=["x"]`, "level=9"},
			wantName: "node-flag", wantProfiles: []string{"x"}, wantLevel: 9,
		},
		{
			name:     "later var flag wins",
			vars:     []string{"release=one", "release=two=2"},
			wantName: "node-two=2", wantProfiles: []string{"base"}, wantLevel: 3,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"build.ims.hcl": precedenceBuild})
			writeFiles(t, dir, tc.varFiles)
			var files []string
			for _, name := range keys(tc.varFiles) {
				files = append(files, filepath.Join(dir, name))
			}
			cfg, diags := Load(dir, Options{Vars: tc.vars, VarFiles: files, Environ: tc.env})
			if diags.HasErrors() {
				t.Fatalf("Load() diagnostics: %v", diags)
			}
			img := cfg.Images["base"]
			got := []any{img.Name, cfg.Recipes["node"].Profiles, img.Squashfs.Level}
			want := []any{tc.wantName, tc.wantProfiles, tc.wantLevel}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Load() name, profiles, level mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFunctions(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"motd.tpl": "Hello ${name}, ${upper(site)}!",
		"data.txt": "abc",
		"build.ims.hcl": `
locals {
  tpl    = templatefile("motd.tpl", { name = "node", site = local.site })
  site   = lower("EU-1")
  sum    = filesha256("data.txt")
  exists = fileexists("data.txt") && !fileexists("nope.txt")
  home   = abspath("~/x")
  all    = join(",", [local.tpl, local.sum, tostring(local.exists), local.home, env("WHO"), sha256("abc"), md5("abc"), base64decode(base64encode("hi")), format("%03d", 7), replace("a-b", "-", "_")])
}
recipe "r" {
  source = "r"
  linux_distribution = local.all
}
`,
	})
	cfg, diags := Load(dir, Options{Environ: []string{"HOME=/home/u", "WHO=me"}})
	if diags.HasErrors() {
		t.Fatalf("Load() diagnostics: %v", diags)
	}
	want := strings.Join([]string{
		"Hello node, EU-1!",
		"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		"true", "/home/u/x", "me",
		"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		"900150983cd24fb0d6963f7d28e17f72", "hi", "007", "a_b",
	}, ",")
	if got := cfg.Recipes["r"].LinuxDistribution; got != want {
		t.Errorf("linux_distribution = %q, want %q", got, want)
	}
}
