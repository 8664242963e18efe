// Package record is the one definition of the cache's action and step
// records: the JSON of cache/local's actions/<key>.json and
// steps/<step>-<hash>.json files, which cache/s3 stores as objects under the
// same names and cache/oci as manifest config blobs. Keeping it in one place
// keeps the backends byte-compatible, so a local cache directory synced to a
// bucket is a valid remote cache and the other way round.
//
//	{"result": ActionResult, "preimage": <canonical JSON>}
//	{"step": "...", "key": "...", "preimage": <canonical JSON>}
//
// A preimage that is not compact JSON is kept as "preimageBytes" (base64).
package record
