// Package oci is the OCI registry remote cache backend (oci://registry/repo),
// laid out like BuildKit's registry cache so any registry can share a cache
// between CI runners:
//
//   - Blobs are registry blobs of the repository: a cache digest is the
//     registry digest of the same raw bytes.
//   - The action result of a key is an OCI image manifest tagged
//     key-<first 64 characters of the key>, with artifactType
//     application/vnd.imsbuild.action.v1. Its config blob (media type
//     application/vnd.imsbuild.action.config.v1+json) is cache/local's
//     action record plus the whole key: {"key", "result", "preimage"}. Its
//     layers are the output blobs with their media types and an
//     org.opencontainers.image.title annotation naming the output; the log
//     blob is a layer titled ".log" (annotation io.imsbuild.role=log).
//   - The last key of a step is a manifest tagged step-<sha256 of the step
//     name>, artifactType application/vnd.imsbuild.step.v1, whose config is
//     cache/local's step record.
//
// Requests go through go-containerregistry's transport (auth from the Docker
// config by default, token scopes, plain HTTP for loopback registries or
// with Options.Insecure). Blobs stream in both directions: uploads hash while
// sending and are committed only when the digest matches (the registry
// checks it too); Open verifies at EOF; Materialize renames a verified
// temporary file into place.
//
// Get treats a missing manifest, an undecodable one or config, and a result
// whose blobs do not all exist (parallel HEADs) as cache.ErrNotFound.
//
// A registry never replaces a blob it already has, so a damaged blob stays
// damaged (reads report cache.ErrCorrupt) until it is deleted from the
// registry. Records are read and written through cache/internal/actions,
// the one action cache of all backends. There is no Lock (see
// cache.Locker): registries have no locks, and content addressing makes
// racing writers harmless.
//
// *Cache is the cache.Store; (*Cache).Actions is the cache.ActionCache.
package oci
