// Package sandbox runs commands isolated in Linux namespaces, jailed in an
// image root or in the builder environment with the image at /mnt/image.
//
// Two backends implement [Sandbox]: bubblewrap ("bwrap", preferred when
// installed) and "native", which re-executes the current binary with
// [InitArg] as its first argument so that [MaybeRunInit] sets up the mounts
// inside fresh mount, PID, IPC, UTS and (unless networking is asked for)
// network namespaces before it executes the command. Programs that may use the
// native backend must call [MaybeRunInit] first thing in main (tests: in
// TestMain).
//
// Both backends give the same view:
//
//   - jailed: the image root is "/", with a fresh /proc, a minimal /dev, and a
//     private tmpfs at /tmp (or Spec.TmpDir bound there); with Network the host
//     network is shared and the host's /etc/resolv.conf is bound read-only
//     over the image's one when the image has the file.
//   - non-jailed: the host root read-only, fresh /proc, /dev and /tmp, and the
//     image root bound read-write at /mnt/image.
//
// Mountpoints missing in the image root are created before the run and
// removed afterwards, so nothing of the sandbox is left in the image. No mount
// or process outlives Run: on success, failure, timeout or cancellation the
// whole PID namespace is killed and waited for.
package sandbox
