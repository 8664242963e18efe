// Package verify streams blobs while hashing them for the cache backends:
// internal/verify's Reader bound to cache.Digest and cache.ErrCorrupt (a
// blob that is not its digest, or not its length, reads as an error
// wrapping cache.ErrCorrupt instead of io.EOF), and copies that hash and
// stop when their context ends.
package verify
