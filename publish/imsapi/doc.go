// Package imsapi registers images and recipes with an IMS API (the HPE Cray
// Image Management Service, v3 or v2, or `imsbuild serve`), the way
// `cray ims images create` does, so that a CSM system can boot what imsbuild
// published to S3.
//
// Registration is idempotent: before creating a record, the client lists the
// existing ones and returns the record that has the same name and the same
// link (path and etag of the manifest.json, or of the recipe archive), so
// publishing the same image twice leaves one record.
//
// Requests carry the bearer token of Config.Token. Listing is retried with
// backoff on 5xx, 408, 429, timeouts, connection resets and refusals; a
// create is retried on the same failures only after listing again shows that
// the failed attempt did not create the record. Errors name the operation,
// the method, the URL and the HTTP status, with the RFC 7807 problem details
// IMS sends; 401 and 403 say the token was rejected.
package imsapi
