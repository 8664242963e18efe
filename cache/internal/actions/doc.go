// Package actions is the one implementation of cache.ActionCache, written
// over a Backend that only stores named records (restic's split of a dumb
// backend and one repository). The backends (cache/local, cache/s3,
// cache/oci) keep their storage code; everything they used to repeat lives
// here once: key and step-name checks, the record encoding
// (cache/internal/record), treating an undecodable record or one whose
// blobs are missing or corrupt as a miss, refusing to record a result whose
// blobs are not stored, and skipping the write of an unchanged step record.
//
// Locking is not part of it: see cache.Locker.
package actions
