// Package normalize removes from an image root what differs between two
// builds of the same inputs and that nobody needs in a boot image: the
// run-to-run drift that Debian's reproducible-builds work and mkosi clear
// before they pack an image. The image step runs it after customize and
// before pack, unless the image says `normalize = false`.
//
// Root applies, in the image root:
//
//   - logs of the package managers and installers are truncated to empty
//     files (kept, as Debian and mkosi do, so that tools that append to
//     them still find them): var/log/*.log, var/log/apt/*.log,
//     var/log/zypp/history; apt's compressed solver dump
//     var/log/apt/eipp.log.xz is removed (an empty file is no valid xz);
//   - package caches are removed: var/cache/apt/*.bin (apt rebuilds them),
//     downloaded packages in var/cache/apt/archives (and partial/), zypper's
//     var/cache/zypp/packages, dnf's and yum's var/cache/{dnf,yum} contents;
//   - dpkg's backups var/lib/dpkg/*-old are removed;
//   - ld.so's var/cache/ldconfig/aux-cache (file times and inodes of the
//     build host) is removed; ldconfig makes it again when it runs;
//   - /etc/machine-id, when not empty, is emptied: systemd then gives the
//     node a new id at each boot (the right thing for thousands of nodes
//     booted from one image) instead of the builder's; a regular
//     var/lib/dbus/machine-id is removed (dbus reads /etc/machine-id);
//   - random seeds (var/lib/systemd/random-seed, var/lib/urandom/random-seed)
//     are removed: a seed shared by every node is no seed;
//   - the last-change field of /etc/shadow and /etc/shadow- is clamped to
//     the epoch in days; when that is day 0 the field is emptied instead,
//     since 0 means "change the password at the next login";
//   - Python bytecode whose header records a source mtime other than the
//     epoch (__pycache__/*.pyc of timestamp-based invalidation) is removed:
//     pack sets every mtime to the epoch, so such a file is stale in the
//     image anyway and Python would only recompile it; hash-based .pyc
//     files (PEP 552) and those that match are kept;
//   - the image root and /dev get mode 0755, whatever the builder's umask.
//
// Root works through an os.Root: a symlink never leads it outside the
// image, and only regular files are truncated, edited or removed (a
// symlink in the image's place of a log is left alone).
package normalize
