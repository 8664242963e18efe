// Package cache defines the content-addressed store (CAS) and the action
// cache that make imsbuild skip work: blobs are named by their sha256 and
// action results by the sha256 of a canonical key preimage. Backends live in
// subpackages (local, s3 and oci; tiered puts remote ones behind the local
// one), which share one ActionCache implementation over their record
// storage (cache/internal/actions); only local and tiered lock (Locker).
// cachetest is their conformance suite.
package cache

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotFound reports a blob or action result that is not in the cache.
var ErrNotFound = errors.New("not found in cache")

// ErrCorrupt reports a blob whose content does not match its digest.
var ErrCorrupt = errors.New("cache entry corrupt")

// Digest is "sha256:<64 lowercase hex>".
type Digest string

// Hex returns the hex part of d.
func (d Digest) Hex() string {
	const p = "sha256:"
	if len(d) > len(p) && string(d[:len(p)]) == p {
		return string(d[len(p):])
	}
	return string(d)
}

// Valid reports whether d is a well-formed sha256 digest.
func (d Digest) Valid() bool {
	h := d.Hex()
	if len(h) != 64 || string(d) != "sha256:"+h {
		return false
	}
	for _, c := range h {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Store is a content-addressed blob store.
type Store interface {
	// Put streams r into the store, hashing while copying, and returns its
	// digest and size. If want is not empty and the content differs, nothing
	// is stored and the error wraps ErrCorrupt.
	Put(ctx context.Context, r io.Reader, want Digest) (Digest, int64, error)
	// PutFile stores the file at path (hardlink or reflink when possible).
	PutFile(ctx context.Context, path string) (Digest, int64, error)
	// Open returns the blob; reading it to EOF verifies the digest and
	// returns an error wrapping ErrCorrupt on mismatch.
	Open(ctx context.Context, d Digest) (io.ReadCloser, error)
	// Stat returns the blob size, or ErrNotFound.
	Stat(ctx context.Context, d Digest) (int64, error)
	// Materialize puts the blob at dst (reflink, else hardlink when readOnly, else copy).
	Materialize(ctx context.Context, d Digest, dst string, readOnly bool) error
}

// FileUser is a Store whose blobs are files that a tool may read in place
// (unsquashfs), saving the hard link or copy Materialize makes.
type FileUser interface {
	// UseFile verifies blob d like Materialize does and calls fn with the
	// path of its file, which fn must only read; the blob stays while fn
	// runs. A corrupt blob is an error wrapping ErrCorrupt, fn not called.
	UseFile(ctx context.Context, d Digest, fn func(path string) error) error
}

// Output is one named output of a step, stored as a blob.
type Output struct {
	Digest    Digest `json:"digest"`
	Size      int64  `json:"size"`
	MediaType string `json:"mediaType,omitempty"`
	MD5       string `json:"md5,omitempty"` // hex; IMS manifests need it
}

// ActionResult is what a step produced for a key.
type ActionResult struct {
	Step    string            `json:"step"`
	Outputs map[string]Output `json:"outputs"`
	Builder string            `json:"builder"`
	Created time.Time         `json:"created"`
	Log     Digest            `json:"log,omitempty"` // the step's log blob
}

// Entry is an action result with its key and preimage, as listed by List.
type Entry struct {
	Key      string
	Result   ActionResult
	Preimage []byte // canonical JSON the key hashes
}

// ActionCache maps a key (hex sha256 of a preimage) to an ActionResult.
// It does not lock: see Locker.
type ActionCache interface {
	// Get returns the result for key, or ErrNotFound. A result whose output
	// blobs are missing is reported as ErrNotFound.
	Get(ctx context.Context, key string) (*ActionResult, error)
	// Put records res for key together with its preimage, atomically and last.
	Put(ctx context.Context, key string, preimage []byte, res *ActionResult) error
	// LastKey returns the key and preimage last recorded for step (for explain),
	// or ErrNotFound.
	LastKey(ctx context.Context, step string) (key string, preimage []byte, err error)
	// SetLastKey records key as the newest key seen for step.
	SetLastKey(ctx context.Context, step, key string, preimage []byte) error
}

// Locker serialises the work on a key, so that two builds of one key do
// the work once: the second waits, then finds the first one's result.
//
// The lock is an flock(2) on a file of the local cache directory: it
// excludes every holder of the key in any process on the machine that uses
// the same directory, and nothing on other machines. The remote caches
// (s3, oci) implement no Locker: S3 and registries have no lock that
// survives a crashed holder without a lease, and none is needed for
// correctness, since blobs are content-addressed and an action record is
// written whole and last, so runners racing on one key only duplicate the
// work and write equal results. cache/tiered locks its local cache.
type Locker interface {
	// Lock takes the exclusive lock of key, waiting until it is free or ctx
	// is done (the error then wraps ctx's cause). unlock releases it.
	Lock(ctx context.Context, key string) (unlock func(), err error)
}

// LockingActionCache is what a build runs on: an ActionCache whose keys a
// Locker locks (cache/local's and cache/tiered's).
type LockingActionCache interface {
	ActionCache
	Locker
}
