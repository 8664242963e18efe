# The README's main job: an image imported from a small busybox root, a
# customized child image, both published to ./out in the IMS S3 layout.
# No kiwi, no cloud account; runs in seconds. Make the root first:
#   ./make-root.sh roots/busybox

variable "motd" {
  type        = string
  default     = "Welcome to an imsbuild compute node"
  description = "Message of the day of the compute image"
}

image "base" {
  name   = "busybox-base"
  import = "./roots/busybox"
}

image "compute" {
  name = "busybox-compute"
  from = image.base

  customize {
    files  = { "/etc/motd" = "files/motd" }
    inline = <<-EOT
      echo "${var.motd}" >> /etc/motd
      echo compute > /etc/hostname
    EOT
  }

  customize {
    script = "scripts/compute.sh"
  }
}

publish "dir" "local" {
  images = [image.base, image.compute]
  path   = "out"
}
