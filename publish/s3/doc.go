// Package s3 publishes images to S3 in the IMS layout: for each image,
// <prefix><image-id>/{rootfs,kernel,initrd,boot_parameters} and then
// <prefix><image-id>/manifest.json, in bucket "boot-images" by default.
//
// Artifacts are streamed from the cache (multipart uploads with memory
// bounded by about PartSize × (Concurrency+2)); each object carries its md5 as
// user metadata "md5sum" (IMS reads it: multipart ETags are not MD5s) and its
// sha256 as "sha256", and each artifact the x-shasta-ims-image-name,
// -image-id and (for an image a job built) -job-id that IMS's job helper
// sets. The manifest is written last, only after every artifact
// of the image was uploaded and its size and metadata were checked with a
// HEAD, so a reader never sees a manifest pointing at missing or partial
// objects. Objects already present with the same sha256 and size are not
// uploaded again, which makes republishing cheap.
//
// PublishRecipe puts recipe archives in bucket "ims" under
// recipes/<id>/recipe.tgz the same way. Fetch is the reverse of Publish: it
// reads a manifest.json (s3:// URLs may carry ?endpoint=…&region=…&
// path_style=…&ca_bundle=…, see ParseURL), follows its artifact links and
// streams each artifact to disk, checking md5s; ManifestDigest keys imports.
//
// Credentials come from the AWS SDK default chain (environment, shared
// config and credentials files, AWS_PROFILE, …) unless Config.Credentials
// is set.
package s3
