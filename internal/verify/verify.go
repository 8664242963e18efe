package verify

import (
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	digest "github.com/opencontainers/go-digest"
)

// ErrMismatch is what a mismatch error wraps unless WithMismatch names
// another error.
var ErrMismatch = errors.New("content does not match its digest")

// Reader hashes what is read through it and, at EOF, returns an error
// naming the expected and the actual digest (or length) instead of io.EOF
// when the content is not what was expected. Its error is sticky.
type Reader struct {
	op       string
	r        io.Reader
	h        hash.Hash
	want     digest.Digest
	size     int64 // < 0: unknown
	n        int64
	mismatch error
	err      error
}

// Option configures a Reader.
type Option func(*Reader)

// WithMismatch makes mismatch errors wrap err instead of ErrMismatch, so a
// caller classifies them with its own sentinel (cache.ErrCorrupt).
func WithMismatch(err error) Option {
	return func(v *Reader) { v.mismatch = err }
}

// New returns a Reader of r that expects content want, size bytes long
// (size < 0: unknown). op names what is read in errors, as in
// "<op> <want>: content is <got>: content does not match its digest". A
// want that is not a valid sha256 digest (the only algorithm of the cache
// and of the registries it reads) fails the first Read.
func New(op string, r io.Reader, want digest.Digest, size int64, opts ...Option) *Reader {
	v := &Reader{op: op, r: r, want: want, size: size, mismatch: ErrMismatch}
	for _, o := range opts {
		o(v)
	}
	if !strings.HasPrefix(string(want), string(digest.SHA256)+":") { // Algorithm panics without a ':'

		v.err = fmt.Errorf("%s %s: unsupported digest algorithm", op, want)
		return v
	}
	if err := want.Validate(); err != nil {
		v.err = fmt.Errorf("%s %s: %w", op, want, err)
		return v
	}
	v.h = digest.SHA256.Hash()
	return v
}

func (v *Reader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	switch {
	case v.size >= 0 && v.n > v.size:
		v.err = fmt.Errorf("%s %s: more than its %d bytes: %w", v.op, v.want, v.size, v.mismatch)
		return 0, v.err
	case err == io.EOF:
		if v.size >= 0 && v.n != v.size {
			v.err = fmt.Errorf("%s %s: %d bytes, want %d: %w", v.op, v.want, v.n, v.size, v.mismatch)
			return n, v.err
		}
		if got := digest.NewDigest(digest.SHA256, v.h); got != v.want {
			v.err = fmt.Errorf("%s %s: content is %s: %w", v.op, v.want, got, v.mismatch)
			return n, v.err
		}
		v.err = io.EOF
	case err != nil:
		v.err = err
	}
	return n, err
}

// N returns how many bytes were read.
func (v *Reader) N() int64 { return v.n }

// Err returns the error that stopped v (a mismatch or the underlying
// reader's error), or nil.
func (v *Reader) Err() error {
	if v.err != nil && v.err != io.EOF {
		return v.err
	}
	return nil
}

// ReadCloser is a Reader whose Close closes what it reads, such as a
// response body or a file.
type ReadCloser struct {
	*Reader
	io.Closer
}
