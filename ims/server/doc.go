// Package server is the IMS REST API of imsbuild serve: IMS v3 at /v3, v2
// at /v2 and at the root, all also under /apis/ims, with IMS's bodies,
// defaults, status codes and problem+json (../shared/ims/SPEC.md). Records
// live in a store.Store (IMS's own data files); artifacts in S3 through a
// blob.Store. Jobs are records here; running them is a Runner's work.
package server
