// Package overlay gives a customize step a writable image root without
// unpacking its parent: an overlayfs whose upper layer is the step's
// scratch directory and whose lower layer is the parent, read-only:
// either its unpacked tree ([MountDir]; builders/steps keeps one per
// parent rootfs in the local cache) or its squashfs rootfs attached to a
// read-only loop device and mounted read-only ([Mount]). Scripts and SSH
// sessions change the merged view; mksquashfs packs it.
//
// The parent cannot change: overlayfs never writes to a lower layer, and
// for a squashfs the loop device is read-only and squashfs a read-only
// filesystem too (a tree's owner keeps anything else off it). The
// merged view packs to the same bytes as the unpacked tree would:
//
//   - deleted files and directories are whiteouts and opaque directories in
//     the upper layer, which the merged view hides, so mksquashfs never
//     sees them (nor the trusted.overlay.* attributes that mark them);
//   - index=on keeps hard links whole when one of their names is changed
//     (without it the changed name would be copied up alone and leave the
//     link, unlike in an unpacked tree);
//   - redirect_dir=on lets rename(2) move a directory of the parent (without
//     it the call fails with EXDEV, which only some tools handle);
//   - volatile (Linux 5.10 and later) skips the upper layer's syncs, as
//     eatmydata would: it is thrown away after the pack;
//   - the root directory of the merged view has the upper layer's mode,
//     owner and extended attributes, so they are copied from the parent's
//     root first, as unsquashfs would set them.
//
// One difference remains: a character device 0:0 is overlayfs' whiteout,
// so creating one in the merged view fails with EPERM, where an unpacked
// tree would take it. No image needs one.
//
// Speed, measured on Linux 6.18 with the bench's 400 MB tree of 38 KB files
// packed in 1 MiB blocks: no 400 MB are written per customize any more,
// but mksquashfs reads a merged view on a squashfs mount about as slowly
// as unsquashfs and a page-cache-warm tree together (the kernel's squashfs
// read path allocates and frees page cache for every small file; reading
// the mount with tar takes some 4 s of system time), and unmounting frees
// that page cache again. On an unpacked tree in the page cache the same
// pack takes some 2 s, which is why a tree is the lower layer wherever
// the cache keeps one, and the squashfs mount only the fallback.
//
// Mount fails with an error wrapping [ErrUnavailable] when the host cannot
// do this (not root, no loop devices, no overlayfs or squashfs, a kernel that
// refuses index=on): the caller unpacks the parent instead. [Root.Close]
// unmounts everything; the loop device is made with LO_FLAGS_AUTOCLEAR, so
// the kernel frees it with the last unmount and none is ever left behind,
// even on a failed mount.
//
// The mounts live in the host's mount namespace, where the step's scripts,
// mksquashfs and the SBOM scan all see them. A mount namespace made while
// they are there copies them: the squashfs mount point is detached as soon
// as the overlay holds it (one mount fewer to copy), and the overlay's
// parent is the scratch directory bound onto itself and shared, so copies
// kept as slaves (kiwi's unshare) go with our unmount. A namespace that
// makes its copies private holds them, and the loop device, until it ends
// or drops them (a sandbox does when it pivots into its root).
package overlay
