#!/bin/bash
# kiwi-ng runs this inside the root after the bootstrap packages and before
# the image packages. The dracut drop-in goes in now, so the initrd the
# kernel's postinst builds already boots a node from a squashfs rootfs (a
# root/ overlay file would arrive after the packages, and config.sh would
# have to build the initrd once more).
set -e
mkdir -p /etc/dracut.conf.d
cat > /etc/dracut.conf.d/90-imsbuild.conf <<'CONF'
# Boot from a squashfs rootfs (IMS/CSM style): dmsquash-live (Debian package
# dracut-live) mounts the squashfs with an overlay; virtio for qemu nodes.
hostonly="no"
add_drivers+=" squashfs overlay virtio_blk virtio_pci virtio_net "
add_dracutmodules+=" dmsquash-live "
# gzip -1, not dracut's gzip -9: 3.6 s instead of 22 s per initrd build (the
# kernel and dracut packages build it twice), for 25.6 MB instead of 23.1 MB.
compress="gzip -1"
CONF
