// Package treediff lists how two directory trees differ, as diffoscope
// summarises two builds: per path, a changed type, content, permission
// bits, owner, mtime, symlink target, device number or extended
// attribute, and paths missing from or extra in the second tree. It is what
// `imsbuild build --check` reports when a rebuilt image differs from the
// cached one.
//
// Squashfs compares two squashfs files by unpacking both with the real
// unsquashfs into scratch directories (no squashfs parser of our own);
// owners, device nodes and extended attributes survive that only as root.
//
// The report is bounded: the first Max changes in path order are kept and
// all are counted. A directory that is missing or extra is one change, not
// one per entry below it.
package treediff
