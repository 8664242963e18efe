// Package keylock provides in-process per-key locks that a waiter can give
// up on when its context ends. The remote cache backends use it for
// ActionCache.Lock, which they can only serialise within one process.
package keylock
