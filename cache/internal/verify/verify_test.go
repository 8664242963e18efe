package verify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/imsbuild/imsbuild/cache"
)

func digestOf(s string) cache.Digest {
	sum := sha256.Sum256([]byte(s))
	return cache.Digest("sha256:" + hex.EncodeToString(sum[:]))
}

func TestReader(t *testing.T) {
	const content = "squashfs image"
	tests := []struct {
		name    string
		want    cache.Digest
		size    int64
		corrupt string // "" = reads fine; else in the error
	}{
		{name: "match", want: digestOf(content), size: -1},
		{name: "match with size", want: digestOf(content), size: int64(len(content))},
		{name: "other content", want: digestOf("other"), size: -1, corrupt: "content is " + string(digestOf(content))},
		{name: "short", want: digestOf(content), size: 100, corrupt: "14 bytes, want 100"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := New(iotest.OneByteReader(strings.NewReader(content)), tc.want, tc.size)
			got, err := io.ReadAll(v)
			if string(got) != content {
				t.Errorf("ReadAll() = %q, want %q", got, content)
			}
			if tc.corrupt == "" {
				if err != nil || v.Err() != nil || v.N() != int64(len(content)) {
					t.Errorf("ReadAll() = %v, Err() = %v, N() = %d; want nil, nil, %d", err, v.Err(), v.N(), len(content))
				}
				return
			}
			if !errors.Is(err, cache.ErrCorrupt) || !strings.Contains(err.Error(), tc.corrupt) {
				t.Errorf("ReadAll() = %v, want ErrCorrupt with %q", err, tc.corrupt)
			}
			if !errors.Is(v.Err(), cache.ErrCorrupt) {
				t.Errorf("Err() = %v, want ErrCorrupt", v.Err())
			}
			if n, err := v.Read(make([]byte, 8)); n != 0 || !errors.Is(err, cache.ErrCorrupt) {
				t.Errorf("Read() after a mismatch = %d, %v; want 0 and the same error", n, err)
			}
		})
	}
}

func TestReaderStickyError(t *testing.T) {
	boom := errors.New("boom")
	v := New(iotest.ErrReader(boom), digestOf(""), -1)
	for range 2 {
		if _, err := v.Read(make([]byte, 1)); !errors.Is(err, boom) {
			t.Errorf("Read() = %v, want %v", err, boom)
		}
	}
	if !errors.Is(v.Err(), boom) {
		t.Errorf("Err() = %v, want %v", v.Err(), boom)
	}
}

func TestNewOp(t *testing.T) {
	_, err := io.ReadAll(NewOp("read blob", strings.NewReader("x"), digestOf("y"), -1))
	if want := "read blob " + string(digestOf("y")) + ": content is "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error = %v, want it to start with %q", err, want)
	}
}

type closer struct{ closed *bool }

func (c closer) Close() error { *c.closed = true; return nil }

func TestReadCloser(t *testing.T) {
	var closed bool
	rc := io.ReadCloser(ReadCloser{Reader: New(strings.NewReader("x"), digestOf("x"), 1), Closer: closer{&closed}})
	if b, err := io.ReadAll(rc); err != nil || string(b) != "x" {
		t.Errorf("ReadAll() = %q, %v", b, err)
	}
	if rc.Close(); !closed {
		t.Errorf("Close() did not close the underlying reader")
	}
}

func TestHashCopy(t *testing.T) {
	content := strings.Repeat("0123456789", BufSize/5) // two buffers' worth
	var buf bytes.Buffer
	for _, w := range []io.Writer{&buf, nil} {
		d, n, err := HashCopy(t.Context(), w, strings.NewReader(content))
		if err != nil || d != digestOf(content) || n != int64(len(content)) {
			t.Errorf("HashCopy() = %s, %d, %v; want %s, %d", d, n, err, digestOf(content), len(content))
		}
	}
	if buf.String() != content {
		t.Errorf("HashCopy() wrote %d bytes, want %d", buf.Len(), len(content))
	}
}

func TestCopyCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := HashCopy(ctx, io.Discard, strings.NewReader("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("HashCopy(cancelled) = %v, want context.Canceled", err)
	}
}
