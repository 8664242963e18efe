#!/bin/bash
# kiwi-ng runs this inside the image root after the packages are installed.
# (The initrd is already right: post_bootstrap.sh put the dracut drop-in in
# place before the kernel's postinst built it.)
set -e
test -f /.kconfig && . /.kconfig
test -f /.profile && . /.profile

echo "Configure image: [${kiwi_iname:-debian-node}]..."

# A node image has no machine identity of its own.
: > /etc/machine-id
echo node > /etc/hostname
