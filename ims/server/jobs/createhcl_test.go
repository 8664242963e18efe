package jobs

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hashicorp/hcl/v2"

	"github.com/imsbuild/imsbuild/cache/local"
	"github.com/imsbuild/imsbuild/engine"
	"github.com/imsbuild/imsbuild/ims/server/store"
	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/spec"
)

// TestCreateBuildKeys: the build files of a create job (what a job whose
// steps build in Kubernetes runs) plan the same steps with the same keys
// as the build createConfig makes in Go (a job without an executor), so
// that the two share the cache; a request's values that look like HCL
// templates stay text.
func TestCreateBuildKeys(t *testing.T) {
	testutil.FakeKiwi(t) // the prepare's key names kiwi's version
	const ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	for _, tc := range []struct {
		name  string
		job   store.Job
		certs []string
	}{
		{"plain", store.Job{ImageRootArchiveName: "node", KernelFileName: "vmlinuz", InitrdFileName: "initrd"}, nil},
		{"ca and aarch64", store.Job{ImageRootArchiveName: "node-${var.arch}%{ if true }x%{ endif }\"", Arch: "aarch64",
			KernelFileName: "Image", InitrdFileName: "initrd.img"}, []string{ca}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := store.Recipe{LinuxDistribution: "sles15"}
			work := t.TempDir()
			buildDir := filepath.Join(work, "build")
			writeFiles(t, filepath.Join(buildDir, "recipe"), map[string]string{
				"config.xml": `<image schemaversion="7.5" name="fake"><preferences><version>1.0.0</version></preferences></image>` + "\n",
			})
			cacheDir := filepath.Join(work, "cache")
			goCfg := createConfig(tc.job, rec, filepath.Join(buildDir, "recipe"), filepath.Join(buildDir, createOut), cacheDir, tc.certs)
			if err := addCA(goCfg.Images[createImage], tc.certs, buildDir); err != nil {
				t.Fatal(err)
			}
			hclCfg, err := loadCreateBuild(t.Context(), tc.job, rec, buildDir, work, tc.certs)
			if err != nil {
				t.Fatal(err)
			}
			if got := hclCfg.Images[createImage].Name; got != tc.job.ImageRootArchiveName {
				t.Errorf("image name %q, want the request's %q as it is", got, tc.job.ImageRootArchiveName)
			}
			// What enters the image step's key, which a plan cannot show
			// before its prepare ran.
			ignore := cmpopts.IgnoreTypes(hcl.Range{})
			if diff := cmp.Diff(goCfg.Images, hclCfg.Images, ignore, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("images of the build files differ from createConfig's (-Go +HCL):\n%s", diff)
			}
			plan := func(cfg *spec.Config, cache string) []engine.PlanEntry {
				c, err := local.Open(filepath.Join(work, cache))
				if err != nil {
					t.Fatal(err)
				}
				e, err := engine.New(cfg, c, c.Actions(), engine.Options{StateDir: filepath.Join(work, cache), Environ: []string{"SOURCE_DATE_EPOCH=1700000000"}})
				if err != nil {
					t.Fatal(err)
				}
				p, err := e.Plan(t.Context(), nil, false)
				if err != nil {
					t.Fatal(err)
				}
				return p
			}
			inGo, inHCL := plan(goCfg, "go"), plan(hclCfg, "hcl")
			// An image step's key waits for its prepare's output; the
			// plan names the prepare's key in its reason.
			if diff := cmp.Diff(inGo, inHCL); diff != "" {
				t.Errorf("plan of the build files differs from createConfig's (-Go +HCL):\n%s", diff)
			}
			if r := inGo[0].Reasons; inGo[0].Step != "image."+createImage || len(r) != 1 || !strings.Contains(r[0], "prepare runs (key ") {
				t.Errorf("plan %v: want image.%s first, with its prepare's key", inGo, createImage)
			}
		})
	}
}
