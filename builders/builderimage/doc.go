// Package builderimage turns a builder environment given as an OCI image
// into a directory that the sandbox uses as "/" for non-jailed runs
// (sandbox.Spec.BuilderRoot), so that a site pins its kiwi-ng version the way
// IMS pins its builder container.
//
// A reference is either a registry reference ("registry/repo:tag",
// "registry/repo@sha256:…") or an OCI image layout on disk,
// "oci-layout:///abs/path", "oci-layout:///abs/path:tag",
// "oci-layout:///abs/path@sha256:…" (also ":sha256:…"), or a plain directory
// path holding an "oci-layout" file, with the same optional selectors. A
// multi-platform index resolves to the manifest of [Options.Platform].
//
// [Resolve] returns the manifest digest without downloading layers. [Unpack]
// flattens the image (layers applied in order, OCI whiteouts and opaque
// directories honoured) into <cacheDir>/<digest hex>/rootfs through the
// repository's safe tar extractor, so that no entry can write outside that
// directory. Every layer is checked against its digest; an image whose
// content does not match leaves nothing in the cache. The cache is keyed by
// manifest digest: a completed entry carries a "complete" marker, two
// processes unpacking the same image serialize on <cacheDir>/<hex>.lock, and
// an unpack happens in a temporary directory renamed into place at the end,
// so a failed or cancelled unpack leaves no entry behind.
//
// A reference pinned by digest that is already unpacked is served from the
// cache without any network access (for a pinned multi-platform index, once
// the platform's manifest has been unpacked through it). A tag is resolved
// against its registry on every call, which costs one manifest request and
// no blob download when the image is cached.
package builderimage
