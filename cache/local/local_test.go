package local

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/cachetest"
)

func TestConformance(t *testing.T) {
	cachetest.Run(t, func(t *testing.T) (cache.Store, cache.ActionCache) {
		c := newCache(t)
		return c, c.Actions()
	})
	cachetest.RunLocker(t, func(t *testing.T) cache.Locker { return newCache(t).Actions() })
}

func newCache(t testing.TB) *Cache {
	t.Helper()
	c, err := Open(filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	return c
}

func putString(t testing.TB, c *Cache, s string) cache.Digest {
	t.Helper()
	d, _, err := c.Put(t.Context(), strings.NewReader(s), "")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestOpenLayout(t *testing.T) {
	c := newCache(t)
	for _, d := range []string{"blobs/sha256", "actions", "steps", "locks", "tmp"} {
		if fi, err := os.Stat(filepath.Join(c.Dir(), d)); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v, want a directory", d, err)
		}
	}
	if got, want := c.StatCachePath(), filepath.Join(c.Dir(), "statcache"); got != want {
		t.Errorf("StatCachePath() = %s, want %s", got, want)
	}
	d := putString(t, c, "abc")
	want := filepath.Join(c.Dir(), "blobs/sha256/ba/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
	if got := c.BlobPath(d); got != want {
		t.Errorf("BlobPath() = %s, want %s", got, want)
	}
	fi, err := os.Stat(want)
	if err != nil || fi.Mode().Perm() != 0o444 {
		t.Errorf("blob file: %v, %v; want mode 0444", fi, err)
	}
	ents, _ := os.ReadDir(filepath.Join(c.Dir(), "tmp"))
	if len(ents) != 0 {
		t.Errorf("tmp/ has %d entries after Put, want 0", len(ents))
	}
	// Opening again sees the same content.
	c2, err := Open(c.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if n, err := c2.Stat(t.Context(), d); err != nil || n != 3 {
		t.Errorf("Stat() through a second Open = %d, %v", n, err)
	}
	if _, err := Open(filepath.Join(want, "sub")); err == nil {
		t.Errorf("Open(under a file) = nil error")
	}
}

func TestPutFileNeverHardlinks(t *testing.T) {
	c := newCache(t)
	src := filepath.Join(t.TempDir(), "squashfs")
	if err := os.WriteFile(src, []byte("image"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, _, err := c.PutFile(t.Context(), src)
	if err != nil {
		t.Fatal(err)
	}
	sfi, _ := os.Stat(src)
	bfi, _ := os.Stat(c.BlobPath(d))
	if os.SameFile(sfi, bfi) {
		t.Errorf("PutFile() hard-linked the source into the cache")
	}
}

// reflinks reports whether dir's filesystem supports FICLONE.
func reflinks(t *testing.T, dir string) bool {
	a, err := os.Create(filepath.Join(dir, ".probe-a"))
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(a.Name())
	defer a.Close()
	b, err := os.Create(filepath.Join(dir, ".probe-b"))
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(b.Name())
	defer b.Close()
	return reflink(b, a) == nil
}

func TestMaterializeStrategy(t *testing.T) {
	c := newCache(t)
	d := putString(t, c, "kernel")
	cow := reflinks(t, c.Dir())
	for _, readOnly := range []bool{true, false} {
		dst := filepath.Join(c.Dir(), "..", "out", "kernel")
		if err := c.Materialize(t.Context(), d, dst, readOnly); err != nil {
			t.Fatal(err)
		}
		dfi, _ := os.Stat(dst)
		bfi, _ := os.Stat(c.BlobPath(d))
		wantLink := readOnly && !cow
		if got := os.SameFile(dfi, bfi); got != wantLink {
			t.Errorf("Materialize(readOnly=%v) hard link = %v, want %v (reflink support %v)", readOnly, got, wantLink, cow)
		}
	}
}

func TestGetUndecodableIsMissAndRemoved(t *testing.T) {
	c := newCache(t)
	ac := c.Actions()
	key := strings.Repeat("c", 64)
	tests := []struct{ name, content string }{
		{"garbage", "{not json"},
		{"bad digest", `{"result":{"outputs":{"rootfs":{"digest":"md5:00"}}}}`},
		{"bad log digest", `{"result":{"log":"sha256:xyz"}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(c.Dir(), "actions", key+".json")
			if err := os.WriteFile(p, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := ac.Get(t.Context(), key); !errors.Is(err, cache.ErrNotFound) {
				t.Errorf("Get() = %v, want ErrNotFound", err)
			}
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("undecodable action file still there: %v", err)
			}
		})
	}
}

func TestActionKeys(t *testing.T) {
	ac := newCache(t).Actions()
	for _, key := range []string{"", "../x", "a/b", ".hidden", strings.Repeat("a", 201)} {
		if _, err := ac.Get(t.Context(), key); err == nil || errors.Is(err, cache.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want an invalid key error", key, err)
		}
		if err := ac.Put(t.Context(), key, nil, &cache.ActionResult{}); err == nil {
			t.Errorf("Put(%q) = nil error", key)
		}
		if _, err := ac.Lock(t.Context(), key); err == nil {
			t.Errorf("Lock(%q) = nil error", key)
		}
	}
	if err := ac.Put(t.Context(), "k", nil, nil); err == nil {
		t.Errorf("Put(nil result) = nil error")
	}
	if err := ac.SetLastKey(t.Context(), "", "k", nil); err == nil {
		t.Errorf("SetLastKey(empty step) = nil error")
	}
}

func TestActionPutRefusesMissingBlobs(t *testing.T) {
	c := newCache(t)
	res := &cache.ActionResult{Outputs: map[string]cache.Output{"rootfs": {Digest: cachetest.Digest([]byte("nope"))}}}
	err := c.Actions().Put(t.Context(), "k1", nil, res)
	if !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("Put() with a missing output = %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(filepath.Join(c.Dir(), "actions", "k1.json")); !os.IsNotExist(err) {
		t.Errorf("action file written despite the missing blob")
	}
}

func TestActionPutSetsCreated(t *testing.T) {
	c := newCache(t)
	before := time.Now()
	if err := c.Actions().Put(t.Context(), "k1", nil, &cache.ActionResult{Step: "s"}); err != nil {
		t.Fatal(err)
	}
	got, err := c.Actions().Get(t.Context(), "k1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Created.Before(before.Add(-time.Second)) || got.Created.After(time.Now().Add(time.Second)) {
		t.Errorf("Created = %v, want about %v", got.Created, before)
	}
}

func TestGetMarksUse(t *testing.T) {
	c := newCache(t)
	if err := c.Actions().Put(t.Context(), "k1", nil, &cache.ActionResult{}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(c.Dir(), "actions", "k1.json")
	old := time.Now().Add(-72 * time.Hour)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Actions().Get(t.Context(), "k1"); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	if time.Since(fi.ModTime()) > time.Minute {
		t.Errorf("action mtime after Get() = %v, want now", fi.ModTime())
	}
}

func TestPreimageKeptByteForByte(t *testing.T) {
	tests := []struct{ name, preimage string }{
		{"canonical json", `{"a":"<b>&","n":[1,2]}`},
		{"indented json", "{\n  \"a\": 1\n}\n"},
		{"not json", "\x00\xffbinary"},
		{"empty", ""},
		{"string", `"just a string"`},
	}
	c := newCache(t)
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := strings.Repeat(string(rune('a'+i)), 64)
			if err := c.Actions().Put(t.Context(), key, []byte(tc.preimage), &cache.ActionResult{Created: time.Unix(int64(i), 0)}); err != nil {
				t.Fatal(err)
			}
			entries, err := c.List(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if e.Key == key && string(e.Preimage) != tc.preimage {
					t.Errorf("List() preimage = %q, want %q", e.Preimage, tc.preimage)
				}
			}
			if err := c.Actions().SetLastKey(t.Context(), "step", key, []byte(tc.preimage)); err != nil {
				t.Fatal(err)
			}
			if _, pre, err := c.Actions().LastKey(t.Context(), "step"); err != nil || string(pre) != tc.preimage {
				t.Errorf("LastKey() preimage = %q, %v; want %q", pre, err, tc.preimage)
			}
		})
	}
}

func TestListAndUsage(t *testing.T) {
	c := newCache(t)
	d1, d2 := putString(t, c, "one"), putString(t, c, "three")
	base := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	for _, a := range []struct {
		key     string
		created time.Time
	}{{"k2", base.Add(2 * time.Hour)}, {"k1", base.Add(time.Hour)}, {"k3", base.Add(3 * time.Hour)}} {
		res := &cache.ActionResult{Step: "s-" + a.key, Created: a.created, Outputs: map[string]cache.Output{"x": {Digest: d1, Size: 3}}}
		if err := c.Actions().Put(t.Context(), a.key, []byte(`{"k":"`+a.key+`"}`), res); err != nil {
			t.Fatal(err)
		}
	}
	// An undecodable file is not listed.
	if err := os.WriteFile(filepath.Join(c.Dir(), "actions", "k9.json"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	entries, err := c.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range entries {
		keys = append(keys, e.Key)
		if want := `{"k":"` + e.Key + `"}`; string(e.Preimage) != want || e.Result.Step != "s-"+e.Key {
			t.Errorf("entry %s: preimage %s step %s", e.Key, e.Preimage, e.Result.Step)
		}
	}
	if diff := cmp.Diff([]string{"k1", "k2", "k3"}, keys); diff != "" {
		t.Errorf("List() order (-want +got):\n%s", diff)
	}
	blobs, bytes, actions, err := c.Usage(t.Context())
	if err != nil || blobs != 2 || bytes != 8 || actions != 4 {
		t.Errorf("Usage() = %d, %d, %d, %v; want 2, 8, 4", blobs, bytes, actions, err)
	}
	_ = d2
}
