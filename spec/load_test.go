package spec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hashicorp/hcl/v2"
)

// ignoreRanges drops source ranges and parsed files from comparisons.
var ignoreRanges = cmp.Options{
	cmpopts.IgnoreTypes(hcl.Range{}),
	cmpopts.IgnoreFields(Config{}, "Files"),
	cmpopts.EquateEmpty(),
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestLoadGood(t *testing.T) {
	full := mustAbs(t, "../testdata/good/full")
	pem, err := os.ReadFile(filepath.Join(full, "certs/site-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(filepath.Join(full, "home/.ssh/id_ed25519.pub"))
	if err != nil {
		t.Fatal(err)
	}
	fullWant := &Config{
		Dir:        full,
		BuildFiles: []string{"../testdata/good/full/build.ims.hcl"},
		Settings: Settings{
			RequiredVersion: ">= 0.1",
			Cache: CacheSettings{
				Dir:  filepath.Join(full, ".imsbuild/cache"),
				From: []string{"s3://ci-cache/imsbuild"},
				To:   "s3://ci-cache/imsbuild",
				Salt: "site-1",
				Env:  []string{"http_proxy"},
			},
		},
		Repositories: map[string]*Repository{
			"debian": {
				Name: "debian", Type: "apt", URL: "http://mirror.example/debian",
				Distribution: "trixie", Components: []string{"main", "contrib"}, WaitTimeout: 10 * time.Minute,
			},
		},
		Recipes: map[string]*Recipe{
			"node": {
				Name: "node", Source: filepath.Join(full, "recipes/node"), Type: "kiwi-ng", Arch: "x86_64",
				Profiles: []string{"KIS"}, LinuxDistribution: "debian", RequireDKMS: true,
				Template: map[string]string{"release": "trixie"}, Repositories: []string{"debian"},
			},
		},
		Images: map[string]*Image{
			"base": {
				Label: "base", Name: "node-trixie", Arch: "x86_64", Recipe: "node",
				KernelFileName: "vmlinuz", InitrdFileName: "initrd",
				CACertificates: []string{string(pem)},
				Squashfs:       Squashfs{Compression: "zstd", Level: 3, BlockSize: 1 << 20},
			},
			"compute": {
				Label: "compute", Name: "compute", Arch: "x86_64", From: "base",
				KernelFileName: "vmlinuz", InitrdFileName: "initrd",
				Squashfs: Squashfs{Compression: "zstd", BlockSize: 1 << 20},
				Customize: []Customize{
					{
						Script: filepath.Join(full, "scripts/compute.sh"),
						Files: []FileCopy{
							{Dest: "/etc/issue", Source: filepath.Join(full, "files/motd")},
							{Dest: "/etc/motd", Source: filepath.Join(full, "files/motd")},
							{
								Dest: "/usr/local/sbin/site-tool", Source: filepath.Join(full, "files/motd"),
								Mode: 0o750 | os.ModeSetuid, HasMode: true, Owner: "root:wheel",
							},
						},
						Jail: true,
					},
					{
						Inline:  "echo compute > /etc/hostname\n",
						Env:     map[string]string{"ROLE": "compute"},
						Jail:    true,
						Timeout: 30 * time.Minute,
					},
				},
				Interactive: &Interactive{PublicKeys: []string{string(pub)}, Listen: "127.0.0.1:0", Timeout: 2 * time.Hour, Jail: true},
			},
			"tools": {
				Label: "tools", Name: "tools", Arch: "x86_64", Import: filepath.Join(full, "roots/tools.tar.zst"),
				KernelFileName: "vmlinuz", InitrdFileName: "initrd",
				Squashfs: Squashfs{Compression: "zstd", BlockSize: 1 << 20},
			},
		},
		Publishes: []*Publish{
			{Kind: "dir", Name: "local", Images: []string{"base", "compute"}, Path: filepath.Join(full, "out")},
			{Kind: "s3", Name: "site", Images: []string{"base", "compute"}, Endpoint: "https://rgw.example:8080", Bucket: "boot-images"},
			{
				Kind: "oci", Name: "registry", Images: []string{"compute", "base"},
				Repository: "registry.example/hpc/compute", Tags: []string{"trixie"},
				ImageRepos: map[string]string{"compute": "registry.example/hpc/compute", "base": "registry.example/hpc/node-trixie"},
			},
			{Kind: "ims", Name: "csm", Images: []string{"compute"}, Endpoint: "https://api-gw.example/apis/ims", Token: "s3cr3t"},
		},
	}

	tests := []struct {
		name string
		dir  string
		opts Options
		want *Config
	}{
		{
			name: "full",
			dir:  "../testdata/good/full",
			opts: Options{
				Vars:    []string{"release=trixie"},
				Environ: []string{"HOME=" + filepath.Join(full, "home"), "IMS_TOKEN=s3cr3t", "IMSBUILD_VAR_release=sid"},
			},
			want: fullWant,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, diags := Load(tc.dir, tc.opts)
			if len(diags) > 0 {
				var b strings.Builder
				WriteDiagnostics(&b, cfg.Files, diags, false)
				t.Fatalf("Load(%s) diagnostics:\n%s", tc.dir, b.String())
			}
			if diff := cmp.Diff(tc.want, cfg, ignoreRanges, cmpopts.IgnoreFields(Config{}, "Variables")); diff != "" {
				t.Errorf("Load(%s) mismatch (-want +got):\n%s", tc.dir, diff)
			}
			if v, ok := cfg.Variables["release"]; len(cfg.Variables) != 1 || !ok || v.Sensitive || v.Value.AsString() != "trixie" {
				t.Errorf("Load(%s).Variables = %#v, want release = trixie (the -var wins)", tc.dir, cfg.Variables)
			}
			if cfg.Files[filepath.Join(tc.dir, "build.ims.hcl")] == nil {
				t.Errorf("Load(%s).Files = %v, want build.ims.hcl in it", tc.dir, keys(cfg.Files))
			}
		})
	}
}
