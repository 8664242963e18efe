package verify

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	digest "github.com/opencontainers/go-digest"
)

var errCorrupt = errors.New("corrupt")

func TestReader(t *testing.T) {
	const content = "squashfs image"
	tests := []struct {
		name     string
		want     digest.Digest
		size     int64
		opts     []Option
		mismatch error  // nil = reads fine
		msg      string // in the error
		n        int64  // bytes read when the error came (default: all)
	}{
		{name: "match", want: digest.FromString(content), size: -1},
		{name: "match with size", want: digest.FromString(content), size: int64(len(content))},
		{name: "other content", want: digest.FromString("other"), size: -1, mismatch: ErrMismatch,
			msg: "blob " + string(digest.FromString("other")) + ": content is " + string(digest.FromString(content))},
		{name: "short", want: digest.FromString(content), size: 100, mismatch: ErrMismatch, msg: "14 bytes, want 100"},
		{name: "long stops at the overrun", want: digest.FromString(content), size: 4, mismatch: ErrMismatch, msg: "more than its 4 bytes", n: 5},
		{name: "own sentinel", want: digest.FromString("other"), size: -1, opts: []Option{WithMismatch(errCorrupt)}, mismatch: errCorrupt, msg: "content is"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := New("blob", iotest.OneByteReader(strings.NewReader(content)), tc.want, tc.size, tc.opts...)
			got, err := io.ReadAll(v)
			wantN := int64(len(content))
			if tc.n != 0 {
				wantN = tc.n
			}
			if v.N() != wantN || int64(len(got)) != min(wantN, int64(len(content))) && tc.n == 0 {
				t.Errorf("ReadAll() read %d bytes (N() = %d), want %d", len(got), v.N(), wantN)
			}
			if tc.mismatch == nil {
				if err != nil || v.Err() != nil || string(got) != content {
					t.Errorf("ReadAll() = %q, %v, Err() = %v; want %q, nil, nil", got, err, v.Err(), content)
				}
				if n, err := v.Read(make([]byte, 8)); n != 0 || err != io.EOF {
					t.Errorf("Read() after EOF = %d, %v; want 0, EOF", n, err)
				}
				return
			}
			if !errors.Is(err, tc.mismatch) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("ReadAll() = %v, want %v with %q", err, tc.mismatch, tc.msg)
			}
			if tc.mismatch != ErrMismatch && errors.Is(err, ErrMismatch) {
				t.Errorf("ReadAll() = %v, wraps ErrMismatch besides %v", err, tc.mismatch)
			}
			if !errors.Is(v.Err(), tc.mismatch) {
				t.Errorf("Err() = %v, want %v", v.Err(), tc.mismatch)
			}
			if n, err := v.Read(make([]byte, 8)); n != 0 || !errors.Is(err, tc.mismatch) {
				t.Errorf("Read() after a mismatch = %d, %v; want 0 and the same error", n, err)
			}
		})
	}
}

func TestReaderInvalidDigest(t *testing.T) {
	for _, want := range []digest.Digest{"", "sha256:abc", "md5:" + digest.Digest(strings.Repeat("0", 32)), "sha512:" + digest.Digest(strings.Repeat("0", 128)), "sha256:" + digest.Digest(strings.Repeat("A", 64))} {
		v := New("manifest", strings.NewReader("x"), want, -1)
		if _, err := io.ReadAll(v); err == nil || !strings.HasPrefix(err.Error(), "manifest "+string(want)+": ") {
			t.Errorf("ReadAll(want %q) = %v, want an error naming the digest", want, err)
		}
		if v.N() != 0 {
			t.Errorf("want %q: read %d bytes before failing", want, v.N())
		}
	}
}

func TestReaderStickyError(t *testing.T) {
	boom := errors.New("boom")
	v := New("blob", iotest.ErrReader(boom), digest.FromString(""), -1)
	for range 2 {
		if _, err := v.Read(make([]byte, 1)); !errors.Is(err, boom) {
			t.Errorf("Read() = %v, want %v", err, boom)
		}
	}
	if !errors.Is(v.Err(), boom) {
		t.Errorf("Err() = %v, want %v", v.Err(), boom)
	}
}

type closer struct{ closed *bool }

func (c closer) Close() error { *c.closed = true; return nil }

func TestReadCloser(t *testing.T) {
	var closed bool
	rc := io.ReadCloser(ReadCloser{Reader: New("blob", strings.NewReader("x"), digest.FromString("x"), 1), Closer: closer{&closed}})
	if b, err := io.ReadAll(rc); err != nil || string(b) != "x" {
		t.Errorf("ReadAll() = %q, %v", b, err)
	}
	if rc.Close(); !closed {
		t.Errorf("Close() did not close the underlying reader")
	}
}
