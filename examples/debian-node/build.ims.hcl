# A real kiwi-ng build: a minimal Debian node image from the recipe in
# recipes/node (IMS job_type create), a customized compute image from it
# (job_type customize), both published to ./out in the IMS S3 layout.
# Needs root, kiwi-ng, debootstrap and the Debian mirror; the first build
# takes a few minutes, a rebuild with unchanged inputs is a cache hit.

variable "release" {
  type        = string
  default     = "bookworm"
  description = "Debian release of the node image"
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
  arch               = "x86_64"
  linux_distribution = "debian"
  template           = { release = var.release }
  repositories       = [repository.debian]
}

image "base" {
  recipe            = recipe.node
  name              = "debian-node-${var.release}"
  kernel_file_name  = "vmlinuz"
  initrd_file_name  = "initrd"
  kernel_parameters = "console=ttyS0,115200"

  squashfs {
    compression = "zstd"
    level       = 3
    block_size  = "1M"
  }
}

image "compute" {
  name = "debian-compute-${var.release}"
  from = image.base

  customize {
    script = "scripts/compute.sh"
    files  = { "/etc/motd" = "files/motd" }
  }
}

publish "dir" "local" {
  images = [image.base, image.compute]
  path   = "out"
}
