// Package s3client builds the AWS SDK S3 client and transfer manager that
// cache/s3 and publish/s3 share, set up for S3-compatible servers (Ceph RGW,
// MinIO, versitygw) as well as AWS, and classifies the SDK's errors.
package s3client
