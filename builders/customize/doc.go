// Package customize applies customize blocks to an unpacked image root:
// files copied in, then scripts run in a sandbox.
//
// Each step first copies its files into the root (destinations resolved
// inside the root; symlinks that would lead out of it are refused), each
// with its given mode or else the source's, and its given owner or else the
// one it had; user and group names are looked up in the image's own
// /etc/passwd and /etc/group, never the host's. Then it runs its script, if
// any, with /bin/sh -e: jailed, inside the image root; or non-jailed, with
// the builder's own tools and the image at /mnt/image (IMAGE_ROOT). The
// script is bound read-only from a host temporary directory; nothing of it,
// and nothing of the sandbox, is left in the image.
//
// The root is a plain directory or, for a customize of a parent image, the
// merged view of an overlay on the parent's squashfs (builders/overlay);
// nothing here tells them apart.
package customize
