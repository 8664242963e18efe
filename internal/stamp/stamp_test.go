package stamp

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestOfChangesWithEveryWrite(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	stat := func() Stamp {
		t.Helper()
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		s, ok := Of(fi)
		if !ok {
			t.Fatal("Of() = false on Linux")
		}
		return s
	}
	before := stat()
	if before.Size != 3 || before.Ino == 0 || before.Mtime == 0 || before.Ctime == 0 {
		t.Fatalf("Of() = %+v, want size 3 and an inode and times", before)
	}
	if again := stat(); again != before {
		t.Errorf("Of() changed without a write: %+v, then %+v", before, again)
	}
	// A same-size rewrite with the old mtime put back still changes ctime.
	mtime := time.Unix(0, before.Mtime)
	time.Sleep(10 * time.Millisecond) // past a coarse timestamp tick
	if err := os.WriteFile(p, []byte("xyz"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if after := stat(); after == before {
		t.Errorf("Of() = %+v after a same-size rewrite with mtime restored, want a change", after)
	}
}

func TestSettled(t *testing.T) {
	s := Stamp{Mtime: 10 * int64(time.Second), Ctime: 11 * int64(time.Second)}
	tests := []struct {
		taken int64
		want  bool
	}{
		{taken: 11 * int64(time.Second), want: false},             // same tick as the change
		{taken: 13*int64(time.Second) - 1, want: false},           // within the window after ctime
		{taken: 13 * int64(time.Second), want: true},              // a full window after the later time
		{taken: 12*int64(time.Second) + 500_000_000, want: false}, // a window after mtime, not ctime
	}
	for _, tc := range tests {
		if got := s.Settled(tc.taken); got != tc.want {
			t.Errorf("Settled(%d) = %v, want %v", tc.taken, got, tc.want)
		}
	}
	if at := s.SettledAt(); !s.Settled(at) || s.Settled(at-1) {
		t.Errorf("SettledAt() = %d is not the first settled time", at)
	}
}
