// Package pack turns an image root tree into IMS artifacts: a reproducible
// squashfs rootfs made by mksquashfs, and the kernel and initrd from /boot,
// each with its size, sha256 and md5 computed while it is written.
//
// The rootfs is made with -reproducible and fixed -mkfs-time/-all-time, so
// the same tree always gives the same bytes whatever its mtimes. Kernel and
// initrd are looked up as a chroot would: symlinks resolve inside the root
// (openat2 RESOLVE_IN_ROOT), never to files of the host.
package pack
