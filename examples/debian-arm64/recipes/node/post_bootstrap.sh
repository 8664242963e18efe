#!/bin/bash
# kiwi-ng runs this inside the root after the bootstrap packages and before
# the image packages: the dracut drop-in is in place before the kernel's
# postinst builds the initrd (see examples/debian-node).
set -e
mkdir -p /etc/dracut.conf.d
cat > /etc/dracut.conf.d/90-imsbuild.conf <<'CONF'
# Boot from a squashfs rootfs (IMS/CSM style): dmsquash-live mounts it with
# an overlay; virtio (PCI and MMIO, for qemu's virt machine) for qemu nodes.
hostonly="no"
add_drivers+=" squashfs overlay virtio_blk virtio_pci virtio_mmio virtio_net "
add_dracutmodules+=" dmsquash-live "
compress="gzip -1"
CONF
