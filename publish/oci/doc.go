// Package oci publishes imsbuild images to OCI registries as artifacts
// (image-spec 1.1) and pulls them back.
//
// Each image becomes one image manifest with artifactType
// application/vnd.imsbuild.image.v1, the empty config descriptor and one
// layer per artifact (rootfs, kernel, initrd, boot_parameters) carrying its
// IMS media type and an org.opencontainers.image.title annotation. Manifest
// annotations record the creation time, source and revision, and the
// io.imsbuild.* name, arch, cache key, IMS id and IMS manifest.
//
// Layers stream from the cache (cache.Store.Open); a layer's digest is the
// digest of the blob, stored as-is. Blobs the registry already has are not
// uploaded again, and an unchanged tag is left untouched. Credentials come from
// the Docker config (authn.DefaultKeychain) unless WithKeychain says otherwise.
package oci
