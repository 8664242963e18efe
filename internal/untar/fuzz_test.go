package untar

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func FuzzExtract(f *testing.F) {
	seeds := [][]ent{
		{dir("a/", 0o755), file("a/b", "x", 0o644), symlink("a/c", "b"), hardlink("a/d", "a/b")},
		{file("../escape", "x", 0o644)},
		{symlink("l", "../outside"), file("l/x", "x", 0o644)},
		{symlink("l", "/"), dir("l/tmp/", 0o777)},
		{hardlink("h", "../outside/x")},
		{ent{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "p", Mode: 0o644}}},
	}
	for _, s := range seeds {
		f.Add(archive(f, s...))
	}
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		dst := filepath.Join(parent, "dst")
		sibling := filepath.Join(parent, "outside")
		if err := os.Mkdir(sibling, 0o755); err != nil {
			t.Fatal(err)
		}
		_ = Extract(t.Context(), bytes.NewReader(data), dst, Options{})
		requireEmpty(t, sibling)
		// Make the tree removable whatever modes the archive set.
		filepath.WalkDir(dst, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
	})
}
