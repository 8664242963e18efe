// Package s3test starts a real S3 server (versitygw with its posix backend)
// on a free loopback port for tests, with a temporary data directory, and
// stops it when the test ends. Stop and Restart keep the data directory and
// the port so tests can inject outages.
//
// The versitygw binary is looked up on PATH, then in $GOPATH/bin; install it
// with
//
//	go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
//
// A missing binary skips the test unless IMSBUILD_TEST_REQUIRE names
// "versitygw" (or is "all"). -short skips too.
package s3test
