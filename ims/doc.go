// Package ims is the Image Management Service data model: image manifests,
// records and media types, with the JSON shapes of the IMS API (v2/v3). It is
// a leaf package: it imports nothing of imsbuild.
package ims
