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
)

// later moves c's clock past the racy window, as if the blobs had been
// written a while ago.
func later(c *Cache) { c.now = func() time.Time { return time.Now().Add(time.Hour) } }

// rewrite overwrites 4 bytes of blob d in place, keeping its size, and
// puts its mtime back as it was: only ctime tells.
func rewrite(t *testing.T, c *Cache, d cache.Digest) {
	t.Helper()
	p := c.BlobPath(d)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("XXXX"), 2); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if fi2, err := os.Stat(p); err != nil || fi2.Size() != fi.Size() {
		t.Fatalf("rewrite changed the size: %v, %v", fi2, err)
	}
}

func TestVerifiedRecords(t *testing.T) {
	c := newCache(t)
	later(c)
	d := putString(t, c, "parent rootfs")
	putAction(t, c, "parent", time.Now(), d)
	get := func(wantHashes int64) {
		t.Helper()
		if _, err := c.Actions().Get(t.Context(), "parent"); err != nil {
			t.Fatalf("Get() = %v", err)
		}
		if got := c.hashed.Load(); got != wantHashes {
			t.Errorf("after Get(): %d blobs hashed, want %d", got, wantHashes)
		}
	}
	// Put recorded what it wrote: nothing to hash.
	get(0)
	get(0)
	dst := filepath.Join(t.TempDir(), "rootfs")
	if err := c.Materialize(t.Context(), d, dst, true); err != nil {
		t.Fatalf("Materialize() = %v", err)
	}
	if got := c.hashed.Load(); got != 0 {
		t.Errorf("Materialize() of a verified blob hashed it (%d hashes)", got)
	}
	// The hard link changed the blob's ctime: hashed once, then trusted.
	if err := os.Remove(dst); err != nil {
		t.Fatal(err)
	}
	get(1)
	get(1)
	// Using the file in place changes nothing.
	var used string
	if err := c.UseFile(t.Context(), d, func(p string) error {
		b, err := os.ReadFile(p)
		used = string(b)
		return err
	}); err != nil || used != "parent rootfs" {
		t.Fatalf("UseFile() = %v, read %q", err, used)
	}
	get(1)

	// A same-size in-place rewrite with the mtime put back is still seen.
	rewrite(t, c, d)
	if _, err := c.Actions().Get(t.Context(), "parent"); !errors.Is(err, cache.ErrNotFound) || !errors.Is(err, cache.ErrCorrupt) {
		t.Errorf("Get() after a rewrite = %v, want ErrNotFound and ErrCorrupt", err)
	}
	if _, err := os.Stat(c.BlobPath(d)); !os.IsNotExist(err) {
		t.Errorf("the corrupt blob is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(c.Dir(), "actions", "parent.json")); !os.IsNotExist(err) {
		t.Errorf("the action of the corrupt blob is still there: %v", err)
	}
	if _, err := os.Stat(c.verifiedPath(d)); !os.IsNotExist(err) {
		t.Errorf("the verified record of the corrupt blob is still there: %v", err)
	}
}

func TestRacyRecordNotTrusted(t *testing.T) {
	c := newCache(t) // the real clock
	d := putString(t, c, "fresh")
	// A link changes the blob's ctime to now: a record taken now could miss
	// a write in the same timestamp tick, so none is trusted.
	if err := os.Link(c.BlobPath(d), filepath.Join(t.TempDir(), "link")); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := c.Check(t.Context(), d); err != nil {
			t.Fatalf("Check() = %v", err)
		}
	}
	if got := c.hashed.Load(); got != 2 {
		t.Errorf("2 Check()s of a blob changed within the racy window hashed %d times, want 2", got)
	}
}

func TestRecordOfAnotherFileNotTrusted(t *testing.T) {
	c := newCache(t)
	later(c)
	d := putString(t, c, "content")
	if err := c.Check(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	// A new file at the blob path (other inode), same size, same mtime.
	p := c.BlobPath(d)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	tmp := p + ".new"
	if err := os.WriteFile(tmp, []byte("CONTENT"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(tmp, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	if err := c.Check(t.Context(), d); !errors.Is(err, cache.ErrCorrupt) {
		t.Errorf("Check() of a replaced blob = %v, want ErrCorrupt", err)
	}
	// Garbage in the record is no record.
	d2 := putString(t, c, "other")
	if err := os.WriteFile(c.verifiedPath(d2), []byte("v1 garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	n := c.hashed.Load()
	if err := c.Check(t.Context(), d2); err != nil || c.hashed.Load() != n+1 {
		t.Errorf("Check() with a garbage record = %v after %d hashes, want nil after 1", err, c.hashed.Load()-n)
	}
}

func TestOpenCorruptDropsBlob(t *testing.T) {
	c := newCache(t)
	d := putString(t, c, "kernel image")
	damage(t, c, d)
	rc, err := c.Open(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	for err == nil {
		_, err = rc.Read(buf)
	}
	rc.Close()
	if !errors.Is(err, cache.ErrCorrupt) {
		t.Fatalf("reading a corrupt blob = %v, want ErrCorrupt", err)
	}
	if _, err := c.Stat(t.Context(), d); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("Stat() after reading it corrupt = %v, want ErrNotFound (removed)", err)
	}
}

func TestDropKeepsHealedBlob(t *testing.T) {
	c := newCache(t)
	d := putString(t, c, "kernel image")
	damage(t, c, d)
	f, err := c.openBlob(d)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	putString(t, c, "kernel image") // heals: a new file at the path
	if err := c.checkOpen(t.Context(), d, f); !errors.Is(err, cache.ErrCorrupt) {
		t.Fatalf("checkOpen(old file) = %v, want ErrCorrupt", err)
	}
	if err := c.Check(t.Context(), d); err != nil {
		t.Errorf("Check() of the healed blob = %v; dropping the old file removed the new one", err)
	}
}

func TestVerifyRepairRemovesResultsBuiltOnCorruptBlobs(t *testing.T) {
	c := newCache(t)
	now := time.Now()
	parent, child, other := putString(t, c, "parent"), putString(t, c, "child"), putString(t, c, "other")
	putAction(t, c, "parent", now, parent)
	res := &cache.ActionResult{Step: "child", Created: now, Outputs: map[string]cache.Output{"rootfs": {Digest: child}}}
	pre := []byte(`{"type":"imsbuild/image/v1","parent":{"rootfs":"` + string(parent) + `"}}`)
	if err := c.Actions().Put(t.Context(), "child", pre, res); err != nil {
		t.Fatal(err)
	}
	putAction(t, c, "other", now, other)
	damage(t, c, parent)

	rep, err := c.Verify(t.Context(), VerifyOptions{Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	var broken []string
	for _, b := range rep.BrokenActions {
		broken = append(broken, b.String())
	}
	want := []string{"child: built from corrupt blob " + string(parent), "parent: blob " + string(parent) + " is corrupt"}
	if diff := cmp.Diff(want, broken); diff != "" {
		t.Errorf("Verify(repair) broken actions (-want +got):\n%s", diff)
	}
	for _, k := range []string{"parent", "child"} {
		if _, err := c.Actions().Get(t.Context(), k); !errors.Is(err, cache.ErrNotFound) {
			t.Errorf("Get(%s) after repair = %v, want ErrNotFound", k, err)
		}
	}
	if _, err := c.Actions().Get(t.Context(), "other"); err != nil {
		t.Errorf("Get(other) after repair = %v", err)
	}
}

func TestVerifyRecordsAndPruneCleansRecords(t *testing.T) {
	c := newCache(t)
	later(c)
	kept, gone := putString(t, c, "kept"), putString(t, c, "gone")
	putAction(t, c, "kept", time.Now(), kept)
	if rep, err := c.Verify(t.Context(), VerifyOptions{}); err != nil || !rep.OK() {
		t.Fatalf("Verify() = %+v, %v", rep, err)
	}
	n := c.hashed.Load()
	if err := c.Check(t.Context(), kept); err != nil || c.hashed.Load() != n {
		t.Errorf("Check() after Verify() = %v with %d hashes, want nil with none", err, c.hashed.Load()-n)
	}
	if _, err := c.Prune(t.Context(), PruneOptions{Grace: -1}); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(filepath.Join(c.Dir(), "verified"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{kept.Hex()}; !cmp.Equal(names, want) {
		t.Errorf("verified/ after Prune = %v, want %v (not %s)", names, want, strings.TrimPrefix(string(gone), "sha256:"))
	}
}
