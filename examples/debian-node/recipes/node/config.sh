#!/bin/bash
# kiwi-ng runs this inside the image root after the packages and the root/
# overlay are installed.
set -e
test -f /.kconfig && . /.kconfig
test -f /.profile && . /.profile

echo "Configure image: [${kiwi_iname:-debian-node}]..."

# The kernel's postinst built the initrd before root/ (and with it
# /etc/dracut.conf.d/90-imsbuild.conf) was installed: build it again.
for moddir in /lib/modules/*; do
    kver=$(basename "$moddir")
    [ -e "/boot/vmlinuz-$kver" ] || continue
    dracut --force --kver "$kver" "/boot/initrd.img-$kver"
done

# A node image has no machine identity of its own.
: > /etc/machine-id
echo node > /etc/hostname
