package tail

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestLines(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		max    int
		want   []string
	}{
		{"last lines", []string{"a\nb\nc\nd\n"}, 2, []string{"c", "d"}},
		{"split writes", []string{"he", "llo\nwor", "ld"}, 5, []string{"hello", "world"}},
		{"progress bar", []string{"0%\r50%\r100%\n", "done\r\n"}, 5, []string{"100%", "done"}},
		{"nothing", nil, 3, nil},
		{"kiwi output", []string{"one\ntwo\n", "thr", "ee\nbar 10%\rbar 50%\rbar 100%\n", "partial"}, 3, []string{"three", "bar 100%", "partial"}},
	}
	for _, tc := range tests {
		l := New(tc.max)
		for _, w := range tc.writes {
			l.Write([]byte(w))
		}
		if got := l.Lines(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: Lines() = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestSummaryAndFile(t *testing.T) {
	l := New(10)
	l.Write([]byte("one\n\n  two  \nthree\n"))
	if got := l.Summary(2); got != "two; three" {
		t.Errorf("Summary(2) = %q", got)
	}
	p := filepath.Join(t.TempDir(), "log")
	os.WriteFile(p, []byte("x\ny\nz\n"), 0o644)
	if got := File(p, 2); !slices.Equal(got, []string{"y", "z"}) {
		t.Errorf("File() = %q", got)
	}
	if File(filepath.Join(t.TempDir(), "missing"), 2) != nil {
		t.Error("File(missing) != nil")
	}
}
