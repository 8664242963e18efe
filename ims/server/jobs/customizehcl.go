package jobs

import (
	"context"
	"strings"

	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"

	"github.com/imsbuild/imsbuild/ims/server/store"
	"github.com/imsbuild/imsbuild/spec"
)

// customizeRootfs is the parent's rootfs in the build directory of a
// customize job whose step runs elsewhere (Config.Executor): the build
// directory ships whole in the step's bundle, so the pod imports the
// rootfs from there. The bundle bounds it (engine.MaxBundleSize, 1 GiB).
const customizeRootfs = "parent.sqsh"

// customizeHCL is the build of a customize job as build files, for a job
// whose SSH environment opens in the step's pod: customizeConfig's build,
// with the request's values as variables (see createHCL). %s is the CA
// customize block (createCAHCL), empty without --ca-cert. The
// environment listens where the executor lets people in, whatever
// listen says; timeout "0s" waits for the user without a limit, as IMS.
const customizeHCL = `# The build of an imsbuild serve customize job (generated).
variable "image_name" { type = string }
variable "arch" { type = string }
variable "kernel_file_name" { type = string }
variable "initrd_file_name" { type = string }
variable "public_key" { type = string }
variable "jail" { type = bool }

image "` + customizeLabel + `" {
  import           = "./` + customizeRootfs + `"
  name             = var.image_name
  arch             = var.arch
  kernel_file_name = var.kernel_file_name
  initrd_file_name = var.initrd_file_name

  squashfs {
    compression = "gzip"
    block_size  = "128K"
  }
%s
  interactive {
    public_keys = [var.public_key]
    jail        = var.jail
    network     = true
    timeout     = "0s"
  }
}

publish "dir" "job" {
  images = [image.` + customizeLabel + `]
  path   = "` + createOut + `"
}
`

// loadCustomizeBuild writes the build of customize job job (the parent's
// rootfs already at buildDir/customizeRootfs) as build files into
// buildDir, its variables into varsDir, and loads it.
func loadCustomizeBuild(ctx context.Context, job store.Job, names imageNames, publicKey, buildDir, varsDir string, caCerts []string) (*spec.Config, error) {
	if err := writeFixedBuild(buildDir, customizeHCL, caCerts); err != nil {
		return nil, err
	}
	vars := hclwrite.NewEmptyFile()
	body := vars.Body()
	for _, kv := range []struct{ name, value string }{
		{"image_name", job.ImageRootArchiveName},
		{"arch", names.arch},
		{"kernel_file_name", names.kernel},
		{"initrd_file_name", names.initrd},
		{"public_key", strings.TrimSpace(publicKey)},
	} {
		body.SetAttributeValue(kv.name, cty.StringVal(kv.value))
	}
	body.SetAttributeValue("jail", cty.BoolVal(job.SSHContainers[0].Jail))
	return loadFixedBuild(ctx, buildDir, varsDir, vars)
}
