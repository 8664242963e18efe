// Package md5hex computes the hex md5 sums IMS records and S3 metadata
// carry (IMS checks artifacts by md5; the cache itself uses sha256).
package md5hex
