#!/bin/sh
# make-root.sh DIR — make a minimal busybox root in DIR (idempotent).
# Needs busybox-static (apt-get install busybox-static).
set -eu
dir=${1:-roots/busybox}
bb=$(command -v busybox) || { echo "make-root.sh: busybox not found: apt-get install busybox-static" >&2; exit 1; }
mkdir -p "$dir"
cd "$dir"
mkdir -p bin sbin etc root tmp proc sys dev var/tmp usr/bin usr/sbin
chmod 1777 tmp var/tmp
cp "$bb" bin/busybox
for applet in $(bin/busybox --list); do
	[ "$applet" = busybox ] || ln -sf busybox "bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' > etc/passwd
printf 'root:x:0:\n' > etc/group
printf 'ID=busybox\nNAME="BusyBox node"\n' > etc/os-release
# Fixed mtimes are not needed (imsbuild ignores them), but keep the tree tidy.
echo "made $dir"
