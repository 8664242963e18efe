// Package untar extracts tar archives safely into a directory: no entry may
// escape the destination, nothing is ever written through a symlink, and
// hardlinks may only point at files the same archive already extracted.
// Modes (setuid included), owners (when running as root), modification times
// and extended attributes are kept where the filesystem allows.
//
// Open detects plain, gzip- and zstd-compressed tar files by their magic
// bytes, so callers stream any of them into Extract.
package untar
