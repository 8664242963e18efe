// Package verify streams blobs while hashing them: a Reader that checks a
// blob's sha256 (and length) at EOF and reports a mismatch as an error
// wrapping cache.ErrCorrupt instead of io.EOF, and copies that stop when
// their context ends. It is shared by the cache backends.
package verify
