// Package sshenv is the interactive SSH environment of imsbuild: the IMS
// "customize" job's SSH container and the debug shell of debug_on_failure.
//
// [Serve] runs an SSH server (golang.org/x/crypto/ssh) that lets in only the
// configured public keys (any user name; IMS uses root) and serves these
// session requests:
//
//   - shell: /bin/sh -l in the sandbox, on a PTY when the client asked for
//     one (window-change requests resize it);
//   - exec: /bin/sh -c COMMAND in the sandbox; its exit status is sent back;
//   - subsystem sftp: an in-process SFTP server confined to the image root,
//     which resolves every path like a chroot would (openat2 with
//     RESOLVE_IN_ROOT), so neither ".." nor a symlink leads out of it.
//
// env requests are accepted for LANG, LC_* and TERM only; port forwarding,
// agent and X11 forwarding are refused.
//
// A jailed environment runs each session in the image root with one host
// directory shared by all sessions at /tmp; a non-jailed one runs in the
// builder environment with the image at /mnt/image, or, in IMS's customize
// layout (Config.IMSLayout), with /mnt/image a directory of the environment
// and the image at /mnt/image/image-root, or at /mnt/image/build/image-root
// in the layout of IMS's create job debug shell (Config.IMSBuildLayout).
// The environment ends successfully
// when the completion file appears and fails with [ErrFailed] when the
// failed file does (IMS semantics: /tmp/complete and /tmp/failed when
// jailed, /mnt/image/complete and /mnt/image/failed otherwise); Serve
// removes both. It fails with [ErrTimeout] when Config.Timeout passes.
// Either way, and on cancellation, every session's sandbox is killed and
// the listener closed before Serve returns.
package sshenv
