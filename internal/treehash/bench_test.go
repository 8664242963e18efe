package treehash

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// benchTree makes 1000 files of 1–16 KiB in 20 directories.
func benchTree(b *testing.B) (string, int64) {
	root := b.TempDir()
	var total int64
	for i := range 1000 {
		content := make([]byte, 1024*(1+i%16))
		for j := range content {
			content[j] = byte(i + j)
		}
		total += int64(len(content))
		mustWrite(b, filepath.Join(root, fmt.Sprintf("d%02d/f%04d", i%20, i)), string(content), 0o644)
	}
	return root, total
}

func BenchmarkDirCold(b *testing.B) {
	root, total := benchTree(b)
	b.SetBytes(total)
	for b.Loop() {
		if _, err := Dir(b.Context(), root, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDirWarm(b *testing.B) {
	root, total := benchTree(b)
	sc := newTestStatCache(b, time.Now().Add(time.Minute))
	if _, err := Dir(b.Context(), root, sc); err != nil {
		b.Fatal(err)
	}
	n := sc.hashed.Load()
	b.SetBytes(total)
	for b.Loop() {
		if _, err := Dir(b.Context(), root, sc); err != nil {
			b.Fatal(err)
		}
	}
	if sc.hashed.Load() != n {
		b.Fatalf("warm runs rehashed %d files", sc.hashed.Load()-n)
	}
}
