package local

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/imsbuild/imsbuild/cache"
)

func TestOpenMakesCachePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	if err := os.Mkdir(dir, 0o755); err != nil { // as older versions made it
		t.Fatal(err)
	}
	c, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	d := putString(t, c, "log")
	if err := c.Actions().Put(t.Context(), "k1", []byte(`{"secret":"x"}`), &cache.ActionResult{Log: d}); err != nil {
		t.Fatal(err)
	}
	if err := c.Actions().SetLastKey(t.Context(), "image.x", "k1", []byte(`{"secret":"x"}`)); err != nil {
		t.Fatal(err)
	}
	want := map[string]os.FileMode{dir: os.ModeDir | 0o700}
	for _, pattern := range []string{"actions/*", "steps/*"} {
		m, _ := filepath.Glob(filepath.Join(dir, pattern))
		if len(m) == 0 {
			t.Fatalf("no %s", pattern)
		}
		for _, p := range m {
			want[p] = 0o600
		}
	}
	for p, mode := range want {
		if fi, err := os.Stat(p); err != nil || fi.Mode() != mode {
			t.Errorf("mode of %s = %v (%v), want %v", p, fi.Mode(), err, mode)
		}
	}
}

func TestHMACKey(t *testing.T) {
	c := newCache(t)
	keys := make([][]byte, 4)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			k, err := c.HMACKey()
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for _, k := range keys[1:] {
		if len(k) != 32 || !bytes.Equal(k, keys[0]) {
			t.Fatalf("HMACKey() = %x, want one 32-byte key for all callers (%x)", k, keys[0])
		}
	}
	again, err := Open(c.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if k, err := again.HMACKey(); err != nil || !bytes.Equal(k, keys[0]) {
		t.Errorf("HMACKey() after reopening = %x, %v; want %x", k, err, keys[0])
	}
	if fi, err := os.Stat(filepath.Join(c.Dir(), hmacKeyName)); err != nil || fi.Mode() != 0o600 {
		t.Errorf("key file: %v, %v; want mode 0600", fi, err)
	}
	other := newCache(t)
	if k, _ := other.HMACKey(); bytes.Equal(k, keys[0]) {
		t.Error("two caches have the same HMAC key")
	}
	if ents, _ := os.ReadDir(c.tmpDir()); len(ents) != 0 {
		t.Errorf("tmp/ = %v, want the temp files gone", ents)
	}
}
