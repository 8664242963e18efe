package ctxio

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReader(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	r := Reader(ctx, strings.NewReader("abcdef"))
	p := make([]byte, 3)
	if n, err := r.Read(p); n != 3 || err != nil || string(p) != "abc" {
		t.Fatalf("Read = %d, %v (%q), want 3, nil (abc)", n, err, p)
	}
	cancel()
	if n, err := r.Read(p); n != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("Read after cancel = %d, %v, want 0, context.Canceled", n, err)
	}
}

func TestReaderCopiesAll(t *testing.T) {
	b, err := io.ReadAll(Reader(t.Context(), strings.NewReader("hello")))
	if err != nil || string(b) != "hello" {
		t.Fatalf("ReadAll = %q, %v, want hello, nil", b, err)
	}
}
