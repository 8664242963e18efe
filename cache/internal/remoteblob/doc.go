// Package remoteblob is the blob side of cache.Store for remote backends
// (cache/s3, cache/oci), which differ only in how they HEAD, upload and GET
// one blob. Store streams in both directions and never holds a blob in
// memory: Put hashes while uploading and lets the upload complete only when
// the digest matches (a Put without a digest spools to a temporary file
// first, since a blob's name is its digest); Open verifies the digest at
// EOF; Materialize downloads to a temporary file beside the destination and
// renames it once verified.
package remoteblob
