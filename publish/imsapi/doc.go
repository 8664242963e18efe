// Package imsapi registers images and recipes with an IMS API (the HPE Cray
// Image Management Service, v3 or v2, or `imsbuild serve`), the way
// `cray ims` and IMS's own job helper do, so that a CSM system can boot what
// imsbuild published to S3.
//
// Publisher registers an image in IMS's order: it creates the image record
// (no link), publishes the artifacts and manifest.json under the record's
// id to a Store (the bucket of an s3 publish), and sets the record's link
// last, so the record id is the S3 prefix as IMS tools expect. An image that
// has a record already (same name and arch, linked to the manifest under its
// own id, which lists the same artifacts by type and md5) is not published
// again; an image whose upload or link fails has its new record deleted.
//
// RegisterRecipe (and RegisterImage, for a manifest published elsewhere) is
// idempotent by link: before creating a record, the client lists the
// existing ones and returns the record that has the same name and the same
// link (path and etag), so registering twice leaves one record.
//
// Requests carry the bearer token of Config.Token. Listing is retried with
// backoff on 5xx, 408, 429, timeouts, connection resets and refusals; a
// create with a link is retried on the same failures only after listing
// again shows that the failed attempt did not create the record; a create
// without one (CreateImage) is sent once. Errors name the operation, the
// method, the URL and the HTTP status, with the RFC 7807 problem details
// IMS sends; 401 and 403 say the token was rejected. Record ids IMS answers
// must be UUIDs: they become S3 prefixes and URL paths.
package imsapi
