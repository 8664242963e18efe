// Package blob is what imsbuild serve does with S3: look at the objects a
// record links to, read manifests, and move objects under deleted/ and back
// (IMS soft delete), copying in parts above S3's 5 GiB single-copy limit.
package blob
