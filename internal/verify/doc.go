// Package verify checks content against its digest while it streams, like
// go-containerregistry's internal/verify: a Reader hashes what is read
// through it and, at EOF, reports content that is not the expected digest
// or length as an error instead of io.EOF. Content longer than its
// expected length fails as soon as it overruns, so a hostile server cannot
// make a reader consume more than it was promised.
//
// It is the one verifying reader of the cache backends (cache/internal/verify
// binds its mismatch error to cache.ErrCorrupt) and of the builder image
// layouts (builders/builderimage).
package verify
