package treehash

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// buildTree makes a small tree in a new directory from fuzz bytes: each
// 3-byte group picks a kind, a place and a content or mode.
func buildTree(t *testing.T, data []byte) string {
	root := t.TempDir()
	dirs := []string{"."}
	for i := 0; i+2 < len(data) && i < 3*64; i += 3 {
		kind, where, what := data[i], data[i+1], data[i+2]
		parent := dirs[int(where)%len(dirs)]
		name := fmt.Sprintf("n%d", int(where)%7)
		p := filepath.Join(root, parent, name)
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		switch kind % 4 {
		case 0:
			if err := os.Mkdir(p, 0o700|os.FileMode(what)&0o055); err == nil {
				dirs = append(dirs, filepath.Join(parent, name))
			}
		case 1:
			must(t, os.WriteFile(p, data[i:min(len(data), i+int(what)%8)], 0o600))
		case 2:
			must(t, os.Symlink(fmt.Sprintf("t%d", what), p))
		case 3:
			must(t, os.WriteFile(p, nil, 0o600))
			must(t, os.Chmod(p, 0o600|os.FileMode(what)&0o177))
		}
	}
	return root
}

func FuzzTreeDigest(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 1, 1, 5, 2, 2, 9, 3, 3, 0o7})
	f.Add([]byte("some bytes to make a tree from, a little longer"))
	f.Fuzz(func(t *testing.T, data []byte) {
		a := buildTree(t, data)
		b := buildTree(t, data)
		da, err := Dir(t.Context(), a, nil)
		if err != nil {
			t.Fatalf("Dir() = %v", err)
		}
		db, err := Dir(t.Context(), b, nil)
		if err != nil {
			t.Fatalf("Dir() = %v", err)
		}
		if da != db {
			t.Fatalf("same bytes, different trees: %s vs %s", da, db)
		}
		// Again with a stat cache: identical.
		sc, err := OpenStatCache(filepath.Join(t.TempDir(), "sc"))
		must(t, err)
		for range 2 {
			dc, err := Dir(t.Context(), a, sc)
			if err != nil || dc != da {
				t.Fatalf("Dir(stat cache) = %s, %v; want %s", dc, err, da)
			}
		}
	})
}
