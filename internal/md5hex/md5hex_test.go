package md5hex

import (
	"errors"
	"strings"
	"testing"
	"testing/iotest"
)

func TestOf(t *testing.T) {
	// md5("abc") from RFC 1321's test suite.
	const want = "900150983cd24fb0d6963f7d28e17f72"
	if got := Of([]byte("abc")); got != want {
		t.Errorf("Of(abc) = %s, want %s", got, want)
	}
	if got, err := OfReader(strings.NewReader("abc")); got != want || err != nil {
		t.Errorf("OfReader(abc) = %s, %v, want %s, nil", got, err, want)
	}
}

func TestOfReaderError(t *testing.T) {
	boom := errors.New("boom")
	if _, err := OfReader(iotest.ErrReader(boom)); !errors.Is(err, boom) {
		t.Errorf("OfReader(failing) = %v, want boom", err)
	}
}
