// Package dir publishes images as an offline mirror of the IMS S3 layout:
// <path>/boot-images/<id>/{rootfs,kernel,initrd,boot_parameters,manifest.json}
// and <path>/records/images/<id>.json. Manifest links already name
// s3://boot-images/<id>/<artifact> with the md5 as etag (what a single-part
// PUT gives), so syncing the folder to a bucket and POSTing the record makes
// the image bootable on a CSM system. The record is the body of that POST
// (Record: name, arch, link), without the id and created IMS assigns.
//
// Each image directory is built under <path>/.tmp-* and renamed into place
// (swapped atomically with an older version); manifest.json and the record
// are written last. Publishing the same image again is a no-op.
package dir
