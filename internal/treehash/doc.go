// Package treehash computes content digests of files and Merkle digests of
// directory trees for cache keys, with a stat cache so that unchanged files
// are not rehashed.
//
// A tree digest covers, for every entry below the root, its name (so the
// sorted relative paths), its type (directory, regular file, symlink, device,
// fifo, socket), its permission bits including setuid, setgid and sticky, the
// target of a symlink, the major/minor numbers of a device, and the sha256 of
// a regular file's content. It covers the root directory's own permission
// bits but not the root's name or location.
//
// Dir never covers modification or access times, owners (uid/gid), extended
// attributes or hard-link structure: two checkouts of one recipe by different
// users, at different times, in different places hash the same. DirOwners
// covers the numeric uid and gid of every entry and of the root as well, for
// a tree whose owners are kept where it goes (an image root imported by
// root, whose system users' files keep their owners in the squashfs); its
// encoding has another header ("imsbuild-treehash-owners-v1") and puts
// "<uid>:<gid> " before the payload, so its digests never equal Dir's.
// Owners come from each walk's own lstat, never from the stat cache (which
// holds content sums only), so a chown is always seen.
//
// The encoding is versioned ("imsbuild-treehash-v1"): per directory, children
// are sorted bytewise by name and each is one NUL-terminated record
// "<type> <perm octal> <payload>\x00<name>\x00"; a directory's payload is the
// hex digest of its own records, so the result is a Merkle tree.
//
// File contents are hashed by a bounded pool of workers (2×GOMAXPROCS),
// streaming, so memory does not grow with file size. A StatCache remembers
// (size, mtime, ctime, inode, device) → sha256 by absolute path, as git's
// index does; entries recorded within two seconds of the file's last change
// are "racy" and not trusted, so a file modified in the same timestamp tick
// as it was hashed is always rehashed.
package treehash
