# The reference example of DESIGN.md §3, with one-line blocks split
# (HCL allows a single argument in a one-line block).
imsbuild {
  required_version = ">= 0.1"
  cache {
    dir  = ".imsbuild/cache"
    from = ["s3://ci-cache/imsbuild"]
    to   = "s3://ci-cache/imsbuild"
    salt = "site-1"
    env  = ["http_proxy"]
  }
}

variable "release" {
  type    = string
  default = "bookworm"
}

locals { site_ca = file("certs/site-ca.pem") }

repository "debian" {
  type         = "apt"
  url          = "http://mirror.example/debian"
  distribution = var.release
  components   = ["main", "contrib"]
  wait_timeout = "10m"
}

recipe "node" {
  source             = "./recipes/node"
  type               = "kiwi-ng"
  arch               = "x86_64"
  profiles           = ["KIS"]
  linux_distribution = "debian"
  template           = { release = var.release }
  repositories       = [repository.debian]
}

image "base" {
  recipe           = recipe.node
  name             = "node-${var.release}"
  kernel_file_name = "vmlinuz"
  initrd_file_name = "initrd"
  ca_certificates  = [local.site_ca]
  squashfs {
    compression = "zstd"
    level       = 3
    block_size  = "1M"
  }
  debug_on_failure = false
}

image "compute" {
  from = image.base
  customize {
    jail    = true
    network = false
    script  = "scripts/compute.sh"
    files   = { "/etc/motd" = "files/motd", "/etc/issue" = "files/motd" }
    file {
      source      = "files/motd"
      destination = "/usr/local/sbin/site-tool"
      mode        = "4750"
      owner       = "root:wheel"
    }
  }
  customize {
    inline  = <<EOT
echo compute > /etc/hostname
EOT
    env     = { ROLE = "compute" }
    timeout = "30m"
  }
  interactive {
    public_keys = [file("~/.ssh/id_ed25519.pub")]
    listen      = "127.0.0.1:0"
    timeout     = "2h"
  }
}

image "tools" {
  import = "./roots/tools.tar.zst"
}

publish "dir" "local" {
  images = [image.base, image.compute]
  path   = "out"
}

publish "s3" "site" {
  images   = [image.base, image.compute]
  endpoint = "https://rgw.example:8080"
  bucket   = "boot-images"
}

publish "oci" "registry" {
  images     = [image.compute, image.base]
  repository = "registry.example/hpc/${image.name}"
  tags       = [var.release]
}

publish "ims" "csm" {
  images   = [image.compute]
  endpoint = "https://api-gw.example/apis/ims"
  token    = env("IMS_TOKEN")
}
