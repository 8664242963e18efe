#!/bin/sh
# setup-debian.sh [EXTRA…] — install the Debian packages imsbuild and its
# tests use (and EXTRA ones), only those missing. Idempotent and quiet.
set -eu
# qemu-user-static (its binfmt_misc handlers with the fix-binary flag) builds
# aarch64 images on x86_64; qemu-system-arm boots them in the tests.
# containerd, the CNI plugins, etcd and iptables run the test cluster
# (scripts/k8s); mmdebstrap makes the builder image's Debian base.
pkgs="squashfs-tools bubblewrap busybox-static zstd openssh-client rsync docker-registry runc kiwi debootstrap qemu-system-x86 qemu-user-static qemu-system-arm rpm createrepo-c zypper dnf containerd containernetworking-plugins etcd-server etcd-client iptables mmdebstrap $*"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
$sudo apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
