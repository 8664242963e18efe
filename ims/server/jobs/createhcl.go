package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"

	"github.com/imsbuild/imsbuild/ims/server/store"
	"github.com/imsbuild/imsbuild/spec"
)

// createBuildFile and createVarsFile are the build of a create job as
// build files, for a job whose steps build elsewhere (Config.Executor):
// the remote step (`imsbuild internal run-step`) loads the build from its
// bundle as `imsbuild build` does, so the build must be HCL there and
// here. The HCL text is fixed; the request's values (the image's name,
// file names, arch, the certificates) are variables, whose values
// hclwrite writes into the vars file (quoted and escaped), so that nothing
// of the request is ever parsed as HCL source. It is the build that
// createConfig makes in Go, with the same keys (TestCreateBuildKeys):
// jobs with and without an executor share the cache.
const (
	createBuildFile = "job.ims.hcl"
	createVarsFile  = "job.imsvars.hcl"
)

// createHCL is createBuildFile; %s is the image's CA customize block,
// empty without --ca-cert.
const createHCL = `# The build of an imsbuild serve create job (generated).
variable "image_name" { type = string }
variable "arch" { type = string }
variable "linux_distribution" { type = string }
variable "kernel_file_name" { type = string }
variable "initrd_file_name" { type = string }
variable "ca_certificates" { type = list(string) }

recipe "` + createRecipe + `" {
  source             = "./recipe"
  type               = "kiwi-ng"
  arch               = var.arch
  linux_distribution = var.linux_distribution
  template           = {}
}

image "` + createImage + `" {
  recipe           = recipe.` + createRecipe + `
  name             = var.image_name
  kernel_file_name = var.kernel_file_name
  initrd_file_name = var.initrd_file_name
  ca_certificates  = var.ca_certificates

  squashfs {
    compression = "gzip"
    block_size  = "128K"
  }
%s}

publish "dir" "` + createPublish + `" {
  images = [image.` + createImage + `]
  path   = "` + createOut + `"
}
`

// createCAHCL is addCA's customize block.
const createCAHCL = `
  customize {
    jail   = true
    inline = ":"
    file {
      source      = "` + caSource + `"
      destination = "` + caFile + `"
      mode        = "0644"
    }
  }
`

// loadCreateBuild writes the build of job (recipe rec, unpacked in
// buildDir/recipe) as build files into buildDir, its variables into
// varsDir (outside buildDir: a bundle carries variables its own way), and
// loads it.
func loadCreateBuild(ctx context.Context, job store.Job, rec store.Recipe, buildDir, varsDir string, caCerts []string) (*spec.Config, error) {
	arch := job.Arch
	if arch == "" {
		arch = "x86_64"
	}
	if err := writeFixedBuild(buildDir, createHCL, caCerts); err != nil {
		return nil, err
	}
	certs := []cty.Value{}
	for _, c := range caCerts {
		certs = append(certs, cty.StringVal(c))
	}
	vars := hclwrite.NewEmptyFile()
	body := vars.Body()
	for _, kv := range []struct{ name, value string }{
		{"image_name", job.ImageRootArchiveName},
		{"arch", arch},
		{"linux_distribution", rec.LinuxDistribution},
		{"kernel_file_name", job.KernelFileName},
		{"initrd_file_name", job.InitrdFileName},
	} {
		body.SetAttributeValue(kv.name, cty.StringVal(kv.value))
	}
	if len(certs) == 0 {
		body.SetAttributeValue("ca_certificates", cty.ListValEmpty(cty.String))
	} else {
		body.SetAttributeValue("ca_certificates", cty.ListVal(certs))
	}
	return loadFixedBuild(ctx, buildDir, varsDir, vars)
}

// writeFixedBuild writes build (fixed text whose one %s is the CA
// customize block) as buildDir's build file: with createCAHCL and the
// certificates beside it when caCerts has any, else without.
func writeFixedBuild(buildDir, build string, caCerts []string) error {
	ca := ""
	if len(caCerts) > 0 {
		if err := writeCA(caCerts, buildDir); err != nil {
			return err
		}
		ca = createCAHCL
	}
	return os.WriteFile(filepath.Join(buildDir, createBuildFile), fmt.Appendf(nil, build, ca), 0o644)
}

// loadFixedBuild writes vars (request values) as the variables file in
// varsDir, readable by the server alone, and loads the build of buildDir
// with them.
func loadFixedBuild(ctx context.Context, buildDir, varsDir string, vars *hclwrite.File) (*spec.Config, error) {
	varsFile := filepath.Join(varsDir, createVarsFile)
	if err := os.WriteFile(varsFile, vars.Bytes(), 0o600); err != nil {
		return nil, err
	}
	// No environment: the server's IMSBUILD_VAR_* must not set the job's
	// variables.
	cfg, diags := spec.LoadContext(ctx, buildDir, spec.Options{VarFiles: []string{varsFile}})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if diags.HasErrors() {
		var msgs []string
		for _, d := range diags.Errs() {
			msgs = append(msgs, d.Error())
		}
		return nil, errors.New("build: " + strings.Join(msgs, "; "))
	}
	return cfg, nil
}
