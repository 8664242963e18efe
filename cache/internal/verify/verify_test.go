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

	"github.com/imsbuild/imsbuild/cache"
)

func digestOf(s string) cache.Digest {
	sum := sha256.Sum256([]byte(s))
	return cache.Digest("sha256:" + hex.EncodeToString(sum[:]))
}

func TestReaderCorrupt(t *testing.T) {
	tests := []struct {
		name string
		size int64
		msg  string
	}{
		{name: "other content", size: -1, msg: "blob " + string(digestOf("y")) + ": content is " + string(digestOf("x"))},
		{name: "short", size: 2, msg: "1 bytes, want 2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := digestOf("y")
			if tc.size >= 0 {
				want = digestOf("x")
			}
			v := New(strings.NewReader("x"), want, tc.size)
			_, err := io.ReadAll(v)
			if !errors.Is(err, cache.ErrCorrupt) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("ReadAll() = %v, want ErrCorrupt with %q", err, tc.msg)
			}
		})
	}
}

func TestNewOp(t *testing.T) {
	_, err := io.ReadAll(NewOp("read blob", strings.NewReader("x"), digestOf("y"), -1))
	if want := "read blob " + string(digestOf("y")) + ": content is "; err == nil || !strings.HasPrefix(err.Error(), want) || !errors.Is(err, cache.ErrCorrupt) {
		t.Errorf("error = %v, want ErrCorrupt starting with %q", err, want)
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
