// Package local is the local-directory cache backend, the default cache of
// imsbuild and the one remote caches are read through. Its layout:
//
//	blobs/sha256/<2 hex>/<64 hex>  content-addressed blobs, mode 0444
//	actions/<key>.json             {"result": ActionResult, "preimage": <canonical JSON>}
//	steps/<step>-<hash>.json       the last key and preimage per step, for explain
//	locks/<key>.lock               per-key flock(2) locks; locks/.gc is the cache-wide lock
//	tmp/                           temporary files, renamed into place when complete
//	verified/<64 hex>              the stat of a blob when it was last hashed intact
//	statcache                      the treehash stat cache (StatCachePath)
//	trees/<64 hex>/root            a squashfs blob unpacked, read-only (UseTree)
//	trees/<64 hex>/complete        its marker; trees/<64 hex>.lock its flock(2)
//
// Every file appears atomically (temp file in tmp/ or beside it, fsync,
// rename, directory fsync), so a crash or a cancelled step never leaves a
// partial blob or action. Two processes may share one cache: writes are
// atomic renames, Lock serialises the work on one key, and Prune holds the
// cache-wide lock exclusively while every write through tmp/ holds it
// shared, so it never deletes the blobs of an action being recorded nor a
// temporary file still being written. Prune also removes free lock files
// of keys that have no action, and stale temporary files.
//
// Blobs are verified before anything uses them, also where a consumer gets
// no stream to check (a hard link or reflink by Materialize, a file read in
// place through UseFile) and for every hit of Get: a blob is hashed unless its verified/ record matches its
// current (device, inode, size, mtime, ctime), which any write changes, so
// a warm build hashes nothing (a blob this cache committed is recorded as it
// is written). A corrupt blob is removed together with the
// actions that refer to it, as outputs or in their preimage.
//
// Unpacked trees are a faster way to a blob: customize steps use the tree
// of their parent's rootfs as an overlay's lower layer instead of
// unpacking it each time (see UseTree for what makes one complete). Prune
// counts them against MaxSize and drops them first.
//
// *Cache is the cache.Store; (*Cache).Actions is the cache.ActionCache
// (cache/internal/actions over these files) and the cache.Locker (both
// interfaces have a Put method, so one type cannot be both).
package local
