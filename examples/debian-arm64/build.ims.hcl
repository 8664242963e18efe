# examples/debian-node for aarch64 (issue 15): one kiwi-ng recipe built for
# arm64 compute nodes and for x86_64 ones in one build with one cache, and
# an arm64 compute image customized from it. On an x86_64 machine the
# aarch64 images build under qemu user-mode emulation: it needs the
# qemu-user-static package (its binfmt_misc handler; imsbuild registers
# one if missing). The emulated cold build takes several times as long as
# the x86_64 one (minutes; see docs/guides/aarch64.md); a rebuild with
# unchanged inputs is a cache hit as fast as for x86_64.

variable "release" {
  type        = string
  default     = "bookworm"
  description = "Debian release of the node images"
}

repository "debian" {
  type         = "apt"
  url          = "http://deb.debian.org/debian"
  distribution = var.release
  components   = ["main"]
  wait_timeout = "10m"
}

recipe "node" {
  source             = "./recipes/node"
  type               = "kiwi-ng"
  arch               = "aarch64"
  linux_distribution = "debian"
  template           = { release = var.release }
  repositories       = [repository.debian]
}

# kernel_file_name defaults to "Image" for aarch64, as in IMS.
image "arm64" {
  recipe            = recipe.node
  name              = "debian-node-arm64-${var.release}"
  kernel_parameters = "console=ttyAMA0"
}

# The same recipe for x86_64: its packages carry kiwi arch attributes.
image "x86" {
  recipe            = recipe.node
  arch              = "x86_64"
  name              = "debian-node-x86-${var.release}"
  kernel_parameters = "console=ttyS0,115200"
}

image "compute" {
  name = "debian-compute-arm64-${var.release}"
  from = image.arm64

  customize {
    script = "scripts/compute.sh"
  }
}

publish "dir" "local" {
  images = [image.arm64, image.x86, image.compute]
  path   = "out"
}
