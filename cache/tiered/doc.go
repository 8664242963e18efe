// Package tiered puts remote caches (cache/s3, cache/oci) behind the local
// cache for the engine, so CI runners share work while every step still
// reads and writes the local cache:
//
//   - ActionCache.Get asks the local cache, then each read remote in order
//     (the from remotes, then to). A remote hit returns the result without
//     moving any blob: a remote's Get reports a result whose blobs are not
//     all there as cache.ErrNotFound (the cache.ActionCache contract; s3 and
//     oci check with parallel HEADs). Which remote held each blob is
//     remembered. A missing, damaged or unreachable remote entry is a miss,
//     never an error (logged at debug; unexpected errors go to OnWarning).
//   - Store reads of a blob that is not local (Open, Materialize) download it
//     from the remote that holds it into the local cache, verifying its
//     digest, then serve it locally. So blobs move only when a later step or
//     a publish needs their bytes, and an all-hit build moves none. A corrupt
//     remote blob is cache.ErrCorrupt and nothing of it is kept. Stat of a
//     remote blob answers from the remote (a HEAD) without downloading it.
//   - Store writes, Lock, LastKey and SetLastKey are the local cache's, and
//     so is BlobPath: a publisher that sends a local blob file as it is
//     (publish/oci, zero-copy) still can through the tiered cache.
//   - ActionCache.Put records locally, then writes through to the to remote:
//     the result's blobs that the remote lacks (checked in parallel) are
//     uploaded, and the action record goes last. A failed write-through does
//     not fail the step: Put returns nil and reports the error to OnWarning.
//
// Stats counts the blobs and bytes moved, for tests and the build summary.
//
// *Cache is the cache.Store; (*Cache).Actions is the cache.ActionCache.
package tiered
