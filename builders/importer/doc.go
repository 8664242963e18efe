// Package importer makes an image root tree from an existing root: a
// directory (copied with cp -a, reflinks when the filesystem can), a tarball
// (.tar, .tar.gz, .tgz, .tar.zst, detected by magic bytes and extracted
// safely by internal/untar) or a squashfs file (extracted by unsquashfs).
//
// SourceDigest gives the content digest of such a source for cache keys;
// a directory's covers its owners when the import keeps them (as root).
package importer
