package treehash

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// newTestStatCache returns an empty stat cache whose clock reads now.
func newTestStatCache(t testing.TB, now time.Time) *StatCache {
	t.Helper()
	sc, err := OpenStatCache(filepath.Join(t.TempDir(), "statcache"))
	must(t, err)
	sc.now = func() time.Time { return now }
	return sc
}

func TestStatCache(t *testing.T) {
	later := time.Now().Add(time.Minute) // entries recorded "later" are not racy
	tests := []struct {
		name       string
		now        time.Time // the stat cache's clock
		change     func(t *testing.T, root string)
		wantHashes int64 // content reads by the second Dir
		wantSame   bool
	}{
		{name: "unchanged tree is not rehashed", now: later, wantHashes: 0, wantSame: true},
		{name: "racy entries are rehashed", now: time.Now(), wantHashes: 3, wantSame: true},
		{name: "content change", now: later, wantHashes: 1, change: func(t *testing.T, root string) {
			mustWrite(t, filepath.Join(root, "root/etc/motd"), "hello, world", 0o644)
		}},
		{name: "same size, mtime restored", now: later, wantHashes: 1, change: func(t *testing.T, root string) {
			p := filepath.Join(root, "root/etc/motd")
			fi, err := os.Stat(p)
			must(t, err)
			mustWrite(t, p, "HELLO", 0o644)
			must(t, os.Chtimes(p, fi.ModTime(), fi.ModTime())) // ctime still moves
		}},
		{name: "replaced by another inode", now: later, wantHashes: 1, wantSame: true, change: func(t *testing.T, root string) {
			p := filepath.Join(root, "root/etc/motd")
			mustWrite(t, p+".new", "hello", 0o644)
			must(t, os.Rename(p+".new", p))
		}},
		{name: "mode change (ctime moves)", now: later, wantHashes: 1, change: func(t *testing.T, root string) {
			must(t, os.Chmod(filepath.Join(root, "root/etc/motd"), 0o600))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := base(t)
			sc := newTestStatCache(t, tc.now)
			before, err := Dir(t.Context(), root, sc)
			must(t, err)
			if got := sc.hashed.Load(); got != 3 {
				t.Fatalf("first Dir() hashed %d files, want 3", got)
			}
			if tc.change != nil {
				tc.change(t, root)
			}
			after, err := Dir(t.Context(), root, sc)
			must(t, err)
			if got := sc.hashed.Load() - 3; got != tc.wantHashes {
				t.Errorf("second Dir() hashed %d files, want %d", got, tc.wantHashes)
			}
			if (before == after) != tc.wantSame {
				t.Errorf("Dir() = %s then %s, want same = %v", before, after, tc.wantSame)
			}
			// Whatever the stat cache says, the digest equals a fresh one.
			fresh, err := Dir(t.Context(), root, nil)
			must(t, err)
			if fresh != after {
				t.Errorf("Dir() with stat cache = %s, without = %s", after, fresh)
			}
		})
	}
}

// TestStatCacheTrustsOnlyStableStats proves the cache really skips reading:
// a file whose content changes behind an unchanged stat (which the racy rule
// exists to make impossible in practice) keeps its remembered digest.
func TestStatCacheTrustsOnlyStableStats(t *testing.T) {
	root := base(t)
	p := filepath.Join(root, "root/etc/motd")
	sc := newTestStatCache(t, time.Now().Add(time.Minute))
	d1, err := File(t.Context(), p, sc)
	must(t, err)
	fi, err := os.Lstat(p)
	must(t, err)
	sc.mu.Lock()
	e := sc.entries[p]
	e.Sum[0] ^= 0xff // what a reader of the content would never compute
	sc.entries[p] = e
	sc.mu.Unlock()
	d2, err := File(t.Context(), p, sc)
	must(t, err)
	if d1 == d2 {
		t.Fatalf("File() = %s both times; the stat cache was not used", d1)
	}
	// The same entry recorded within the racy window is ignored.
	sc.mu.Lock()
	e.Recorded = e.Mtime + int64(time.Second)
	sc.entries[p] = e
	sc.mu.Unlock()
	d3, err := File(t.Context(), p, sc)
	must(t, err)
	if d3 != d1 {
		t.Errorf("File() with racy entry = %s, want rehashed %s", d3, d1)
	}
	_ = fi
}

func TestStatCacheSaveOpen(t *testing.T) {
	root := base(t)
	path := filepath.Join(t.TempDir(), "statcache")
	later := time.Now().Add(time.Minute)

	sc, err := OpenStatCache(path)
	must(t, err)
	sc.now = func() time.Time { return later }
	must(t, sc.Save()) // nothing changed: nothing written
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("Save() of an unchanged cache wrote %s (err %v)", path, err)
	}
	want, err := Dir(t.Context(), root, sc)
	must(t, err)
	must(t, sc.Save())
	fi1, err := os.Stat(path)
	must(t, err)
	must(t, sc.Save())
	fi2, err := os.Stat(path)
	must(t, err)
	if !os.SameFile(fi1, fi2) {
		t.Errorf("second Save() without changes rewrote the file")
	}

	sc2, err := OpenStatCache(path)
	must(t, err)
	if sc2.Len() != 3 {
		t.Errorf("reopened Len() = %d, want 3", sc2.Len())
	}
	got, err := Dir(t.Context(), root, sc2)
	must(t, err)
	if got != want || sc2.hashed.Load() != 0 {
		t.Errorf("Dir() with reopened cache = %s after %d hashes, want %s after 0", got, sc2.hashed.Load(), want)
	}
}

// TestStatCacheSaveDropsVanished: Save forgets the files that are gone,
// unless this run used them, and keeps every file that still exists.
func TestStatCacheSaveDropsVanished(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(t.TempDir(), "statcache")
	later := time.Now().Add(time.Minute) // entries are trusted: lookups record nothing
	file := func(name string) string { return filepath.Join(dir, name) }
	open := func() *StatCache {
		t.Helper()
		sc, err := OpenStatCache(path)
		must(t, err)
		sc.now = func() time.Time { return later }
		return sc
	}
	hash := func(sc *StatCache, names ...string) {
		t.Helper()
		for _, n := range names {
			_, err := File(t.Context(), file(n), sc)
			must(t, err)
		}
	}
	names := []string{"used", "usedthengone", "idle", "gone", "subdir/gone"}
	for _, n := range names {
		mustWrite(t, file(n), n, 0o644)
	}
	sc := open()
	hash(sc, names...)
	must(t, sc.Save())

	// Between runs "gone" is deleted and "subdir" becomes a file.
	must(t, os.Remove(file("gone")))
	must(t, os.RemoveAll(file("subdir")))
	mustWrite(t, file("subdir"), "now a file", 0o644)

	sc = open()
	must(t, sc.Save()) // unchanged: not even checked
	if n := open().Len(); n != len(names) {
		t.Errorf("Len() after an unchanged Save() = %d, want %d", n, len(names))
	}
	hash(sc, "used", "usedthengone") // looked up only
	mustWrite(t, file("new"), "new", 0o644)
	hash(sc, "new") // recorded: the cache changed
	if got := sc.hashed.Load(); got != 1 {
		t.Fatalf("second run hashed %d files, want 1 (the others are looked up)", got)
	}
	must(t, os.Remove(file("usedthengone")))
	must(t, sc.Save())

	sc = open()
	var got []string
	for p := range sc.entries {
		rel, err := filepath.Rel(dir, p)
		must(t, err)
		got = append(got, rel)
	}
	slices.Sort(got)
	want := []string{"idle", "new", "used", "usedthengone"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries after Save() and Open (-want +got):\n%s", diff)
	}
	// What is left is still used.
	hash(sc, "idle", "new", "used")
	if n := sc.hashed.Load(); n != 0 {
		t.Errorf("third run hashed %d files, want 0", n)
	}
}

func TestStatCacheCorruptFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "statcache")
	mustWrite(t, path, "not gob at all", 0o644)
	sc, err := OpenStatCache(path)
	if err != nil {
		t.Fatalf("OpenStatCache(corrupt) = %v, want empty cache", err)
	}
	if sc.Len() != 0 {
		t.Errorf("Len() = %d, want 0", sc.Len())
	}
	must(t, sc.Save()) // rewrites a valid, empty file
	sc2, err := OpenStatCache(path)
	must(t, err)
	if sc2.dirty {
		t.Errorf("cache file still undecodable after Save()")
	}
}

func TestStatCacheOpenError(t *testing.T) {
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "file"), "", 0o644)
	if _, err := OpenStatCache(filepath.Join(dir, "file", "statcache")); err == nil {
		t.Errorf("OpenStatCache(under a file) = nil error")
	}
}

func TestStatCacheConcurrent(t *testing.T) {
	roots := []string{base(t), base(t), base(t)}
	sc := newTestStatCache(t, time.Now().Add(time.Minute))
	sc.entries[filepath.Join(roots[0], "vanished")] = statEntry{} // left by an earlier run
	var wg sync.WaitGroup
	digests := make([]string, 4*len(roots))
	for i := range digests {
		wg.Go(func() {
			d, err := Dir(t.Context(), roots[i%len(roots)], sc)
			if err != nil {
				t.Error(err)
			}
			digests[i] = d
			if err := sc.Save(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for i, d := range digests {
		if d != digests[0] {
			t.Errorf("digest %d = %s, want %s", i, d, digests[0])
		}
	}
	if sc.Len() != 3*len(roots) {
		t.Errorf("Len() = %d, want %d (the vanished entry dropped)", sc.Len(), 3*len(roots))
	}
}

func TestNilStatCache(t *testing.T) {
	var sc *StatCache
	must(t, sc.Save())
	if sc.Len() != 0 {
		t.Errorf("nil Len() = %d", sc.Len())
	}
	if _, err := Dir(t.Context(), base(t), sc); err != nil {
		t.Errorf("Dir(nil stat cache) = %v", err)
	}
}

func TestStatCacheRecordWritten(t *testing.T) {
	sc := newTestStatCache(t, time.Now()) // the file changed just now: racy
	p := filepath.Join(t.TempDir(), "rootfs")
	must(t, os.WriteFile(p, []byte("published rootfs"), 0o644))
	want := "sha256:" + hex.EncodeToString(sha256Sum([]byte("published rootfs")))
	must(t, sc.RecordWritten(p, want))
	got, err := File(t.Context(), p, sc)
	if err != nil || got != want || sc.hashed.Load() != 0 {
		t.Errorf("File() after RecordWritten = %s, %v with %d reads; want %s without reading", got, err, sc.hashed.Load(), want)
	}
	// Any later write is seen, even a same-size one.
	must(t, os.WriteFile(p, []byte("published XXXXfs"), 0o644))
	got, err = File(t.Context(), p, sc)
	if want2 := "sha256:" + hex.EncodeToString(sha256Sum([]byte("published XXXXfs"))); err != nil || got != want2 {
		t.Errorf("File() after a rewrite = %s, %v; want %s", got, err, want2)
	}
	if err := sc.RecordWritten(p, "sha256:beef"); err == nil {
		t.Error("RecordWritten(invalid digest) = nil, want an error")
	}
	var nilCache *StatCache
	if err := nilCache.RecordWritten(p, want); err != nil {
		t.Errorf("nil RecordWritten() = %v", err)
	}
}

func sha256Sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }
