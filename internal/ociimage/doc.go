// Package ociimage writes container images as OCI image layouts packed in one
// tar, reproducibly: the same inputs give the same bytes, so the same digest.
// It makes the images the Kubernetes tests load into the cluster's containerd
// (`ctr images import`) and the builder image users push to their registry
// (untar it and `crane push DIR REF`, or `oras cp --from-oci-layout`).
//
// A layer is made from files ([FilesLayer]) or from an existing tar whose
// entries are normalized ([NormalizeTar]): modification times are clamped to
// the image's epoch, access and change times dropped, user and group names
// cleared, so that a root built at another time packs to the same layer.
package ociimage
