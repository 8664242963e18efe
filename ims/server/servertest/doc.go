// Package servertest runs the real IMS API of imsbuild serve (ims/server)
// in-process on httptest, with its records in a temp dir and its S3 a real
// versitygw (internal/s3test) holding the buckets boot-images and ims, for
// the tests of IMS clients such as publish/imsapi and publish/dir.
//
// Like s3test it skips under -short and when versitygw is missing, unless
// IMSBUILD_TEST_REQUIRE names it.
//
// Client is the one HTTP client of the IMS API for tests, of this server
// or of imsbuild serve.
package servertest
