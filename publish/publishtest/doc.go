// Package publishtest is a small publish.Blobs for publisher tests: blobs
// are files in a test's temp dir, read through a reader that checks the
// sha256 at EOF, as the cache does.
package publishtest
