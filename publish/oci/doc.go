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
// What is attached to an image manifest comes after it and before the tags,
// so that a tag never names an image without them. The SBOM is a referrer
// (image-spec 1.1 subject, artifactType application/spdx+json). The
// provenance envelope (ims.ProvenanceFile) is one manifest that is both
// cosign's attestation — tag sha256-<hex>.att, one DSSE layer with the
// predicateType annotation (cosign's ATTESTATION_SPEC) — and a referrer of
// artifactType MediaTypeDSSE; on registries without the referrers API, ggcr
// keeps the referrers tag schema (sha256-<hex>). `oras discover` lists both.
//
// WithSigner gives the Publisher the build's key. Before anything is
// pushed it verifies the envelope with that key against the image's
// layers; it then signs the statement again with the image manifest digest
// added as a subject (named after the repository), because `cosign
// verify-attestation` accepts only a statement naming the image manifest,
// and pushes a cosign simple-signing signature of the manifest
// (sha256-<hex>.sig) for `cosign verify`. A republish reuses a pushed
// envelope or signature of the same payload that still verifies (ECDSA
// signatures are randomized), so it pushes nothing and adds no referrer.
// Without a signer the envelope is pushed as it is.
//
// FetchProvenance finds the envelopes of an image (the .att tag, then the
// referrers) and the digests of its layers by title; Provenance.Verify
// checks them with provenance.VerifyDigests.
//
// Layers stream from the cache (cache.Store.Open); a layer's digest is the
// digest of the blob, stored as-is. Blobs the registry already has are not
// uploaded again, and an unchanged tag is left untouched. Credentials come from
// the Docker config (authn.DefaultKeychain) unless WithKeychain says otherwise.
package oci
