// Package s3 is the S3 remote cache backend (s3://bucket/prefix), meant to
// be shared between CI runners. It keeps the layout of cache/local under the
// prefix, so a local cache directory synced to the bucket is a valid remote
// cache and the other way round:
//
//	<prefix>/blobs/sha256/<2 hex>/<64 hex>  blobs; metadata sha256 = the hex digest
//	<prefix>/actions/<key>.json             {"result": ActionResult, "preimage": …}
//	<prefix>/steps/<step>-<hash>.json       the last key per step, for explain
//
// Blobs stream in both directions and are never held in memory: Put uploads
// in parts (multipart above the part size) while hashing and completes the
// upload only when the digest matches; Open verifies the digest at EOF;
// Materialize downloads to a temporary file beside the destination and
// renames it once verified. A Put without a digest spools to a temporary
// file first, since an object's key is its digest.
//
// Get treats a missing or undecodable action record, and one whose blobs
// are not all present (checked with parallel HEADs), as cache.ErrNotFound.
//
// Records are read and written through cache/internal/actions, the one
// action cache of all backends. There is no Lock (see cache.Locker): S3
// has no lock that survives a crashed holder without a lease, and none is
// needed because blobs are content-addressed and an action record is
// written last, in one PUT, so racing writers write equal results.
// cache/tiered locks the local cache for builds.
//
// *Cache is the cache.Store; (*Cache).Actions is the cache.ActionCache.
package s3
