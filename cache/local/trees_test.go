package local

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/imsbuild/imsbuild/cache"
)

// fillWith returns a fill function that writes a small tree (a file, a
// directory, a hard link and a symlink) and counts its calls.
func fillWith(calls *atomic.Int32) func(string) error {
	return func(root string) error {
		calls.Add(1)
		if err := os.MkdirAll(filepath.Join(root, "etc/sub"), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(root, "etc/hosts"), []byte("127.0.0.1 localhost\n"), 0o644); err != nil {
			return err
		}
		if err := os.Link(filepath.Join(root, "etc/hosts"), filepath.Join(root, "etc/sub/hosts")); err != nil {
			return err
		}
		return os.Symlink("hosts", filepath.Join(root, "etc/link"))
	}
}

// useTree is UseTree that fails the test on an error and releases the tree
// at the end of the test unless the caller does first.
func useTree(t *testing.T, c *Cache, d cache.Digest, fill func(string) error) (string, func(), bool) {
	t.Helper()
	root, release, filled, err := c.UseTree(t.Context(), d, fill)
	if err != nil {
		t.Fatalf("UseTree() = %v", err)
	}
	var once sync.Once
	rel := func() { once.Do(release) }
	t.Cleanup(rel)
	return root, rel, filled
}

func TestUseTreeFillsOnce(t *testing.T) {
	c := newCache(t)
	d := putString(t, c, "rootfs")
	var calls atomic.Int32
	root, release, filled := useTree(t, c, d, fillWith(&calls))
	if !filled || calls.Load() != 1 {
		t.Fatalf("first UseTree() filled = %v after %d fills, want one fill", filled, calls.Load())
	}
	if b, err := os.ReadFile(filepath.Join(root, "etc/sub/hosts")); err != nil || !strings.Contains(string(b), "localhost") {
		t.Fatalf("tree file = %q, %v", b, err)
	}
	release()
	root2, _, filled := useTree(t, c, d, fillWith(&calls))
	if filled || calls.Load() != 1 || root2 != root {
		t.Fatalf("second UseTree() = %s filled %v after %d fills; want %s as it was", root2, filled, calls.Load(), root)
	}
	// The tree is used as it is: reading it leaves it complete.
	if _, err := os.ReadFile(filepath.Join(root2, "etc/hosts")); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.treeComplete(t.Context(), d); err != nil || !ok {
		t.Fatalf("treeComplete() after a read = %v, %v; want true", ok, err)
	}
}

// Steps that need one tree at once unpack it once.
func TestUseTreeConcurrent(t *testing.T) {
	c := newCache(t)
	d := putString(t, c, "rootfs")
	var calls atomic.Int32
	fill := func(root string) error {
		time.Sleep(100 * time.Millisecond) // long enough for the others to arrive
		return fillWith(&calls)(root)
	}
	var wg sync.WaitGroup
	roots := make([]string, 4)
	for i := range roots {
		wg.Go(func() {
			root, release, _, err := c.UseTree(t.Context(), d, fill)
			if err != nil {
				t.Errorf("UseTree() = %v", err)
				return
			}
			defer release()
			roots[i] = root
		})
	}
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d fills for 4 concurrent uses, want 1", n)
	}
	for _, r := range roots {
		if r != roots[0] {
			t.Fatalf("roots %v, want one", roots)
		}
	}
}

// A tree that a crash left without its marker, or that changed after it,
// is not used: it is unpacked again, and the change is gone.
func TestUseTreeRebuildsIncomplete(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir, root string)
	}{
		{"marker deleted", func(t *testing.T, dir, _ string) { must(t, os.Remove(filepath.Join(dir, treeMarkerName))) }},
		{"marker garbage", func(t *testing.T, dir, _ string) {
			must(t, os.WriteFile(filepath.Join(dir, treeMarkerName), []byte("{"), 0o600))
		}},
		{"marker of another blob", func(t *testing.T, dir, _ string) {
			b, err := os.ReadFile(filepath.Join(dir, treeMarkerName))
			must(t, err)
			must(t, os.WriteFile(filepath.Join(dir, treeMarkerName), []byte(strings.Replace(string(b), "sha256:", "sha256:0", 1)), 0o600))
		}},
		{"file truncated", func(t *testing.T, _, root string) { must(t, os.Truncate(filepath.Join(root, "etc/hosts"), 3)) }},
		{"file rewritten, same size", func(t *testing.T, _, root string) {
			must(t, os.WriteFile(filepath.Join(root, "etc/hosts"), []byte("127.0.0.1 localhosX\n"), 0o644))
		}},
		{"file removed", func(t *testing.T, _, root string) { must(t, os.Remove(filepath.Join(root, "etc/link"))) }},
		{"file added", func(t *testing.T, _, root string) {
			must(t, os.WriteFile(filepath.Join(root, "etc/new"), nil, 0o644))
		}},
		{"mode changed", func(t *testing.T, _, root string) { must(t, os.Chmod(filepath.Join(root, "etc/sub"), 0o700)) }},
		{"root removed", func(t *testing.T, _, root string) { must(t, os.RemoveAll(root)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache(t)
			d := putString(t, c, "rootfs")
			var calls atomic.Int32
			root, release, _ := useTree(t, c, d, fillWith(&calls))
			release()
			tc.damage(t, c.treeDir(d), root)
			root, _, filled := useTree(t, c, d, fillWith(&calls))
			if !filled || calls.Load() != 2 {
				t.Fatalf("UseTree() of a damaged tree filled = %v after %d fills, want it filled again", filled, calls.Load())
			}
			b, err := os.ReadFile(filepath.Join(root, "etc/hosts"))
			if err != nil || string(b) != "127.0.0.1 localhost\n" {
				t.Fatalf("etc/hosts = %q, %v; want the unpacked content", b, err)
			}
			if _, err := os.Stat(filepath.Join(root, "etc/new")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a file added to the old tree is in the new one (%v)", err)
			}
		})
	}
}

// A failed or cancelled fill leaves no tree: the next use fills again.
func TestUseTreeFillFails(t *testing.T) {
	c := newCache(t)
	d := putString(t, c, "rootfs")
	boom := errors.New("unsquashfs: boom")
	_, _, _, err := c.UseTree(t.Context(), d, func(root string) error {
		must(t, os.WriteFile(filepath.Join(root, "half"), nil, 0o644))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("UseTree() = %v, want the fill's error", err)
	}
	if _, err := os.Stat(c.treeDir(d)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed fill left %s (%v)", c.treeDir(d), err)
	}
	var calls atomic.Int32
	root, _, filled := useTree(t, c, d, fillWith(&calls))
	if !filled {
		t.Fatal("UseTree() after a failed fill did not fill")
	}
	if _, err := os.Stat(filepath.Join(root, "half")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the failed fill's file is in the tree (%v)", err)
	}
}

func TestKeepTree(t *testing.T) {
	c := newCache(t)
	d := putString(t, c, "rootfs")
	src := filepath.Join(c.Dir(), "tmp", "root") // the same filesystem, as a step's work dir
	must(t, os.Mkdir(src, 0o755))
	var calls atomic.Int32
	must(t, fillWith(&calls)(src))
	kept, err := c.KeepTree(t.Context(), d, src)
	if err != nil || !kept {
		t.Fatalf("KeepTree() = %v, %v; want kept", kept, err)
	}
	if _, err := os.Stat(src); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("KeepTree() left the source (%v), want it moved", err)
	}
	root, _, filled := useTree(t, c, d, fillWith(&calls))
	if filled || calls.Load() != 1 {
		t.Fatalf("UseTree() of a kept tree filled it")
	}
	if _, err := os.Stat(filepath.Join(root, "etc/sub/hosts")); err != nil {
		t.Fatal(err)
	}
	// A second tree of the same blob is not kept: the first stays.
	must(t, os.Mkdir(src, 0o755))
	if kept, err := c.KeepTree(t.Context(), d, src); err != nil || kept {
		t.Fatalf("KeepTree() of a blob with a tree = %v, %v; want not kept", kept, err)
	}
	if _, err := os.Stat(src); err != nil {
		t.Fatalf("KeepTree() not kept removed the source: %v", err)
	}
}

func TestPruneTrees(t *testing.T) {
	ctx := t.Context()
	c := newCache(t)
	now := time.Now()
	kept, gone, inUse, partial := putString(t, c, "kept"), putString(t, c, "gone"), putString(t, c, "in use"), putString(t, c, "partial")
	putAction(t, c, "k", now, kept)
	var calls atomic.Int32
	for _, d := range []cache.Digest{kept, gone, inUse} {
		_, release, _ := useTree(t, c, d, fillWith(&calls))
		if d != inUse {
			release()
		}
	}
	// A crash while unpacking: the directory without a marker.
	must(t, os.MkdirAll(filepath.Join(c.treeDir(partial), treeRootName, "etc"), 0o755))
	rep, err := c.Prune(ctx, PruneOptions{Grace: -1})
	if err != nil {
		t.Fatal(err)
	}
	exists := func(d cache.Digest) bool { _, err := os.Stat(c.treeDir(d)); return err == nil }
	if !exists(kept) || exists(gone) || !exists(inUse) || exists(partial) {
		t.Fatalf("after Prune: kept %v, gone %v, in use %v, partial %v; want true false true false",
			exists(kept), exists(gone), exists(inUse), exists(partial))
	}
	if rep.RemovedTrees != 2 || rep.RemainingTrees != 2 {
		t.Fatalf("Prune() removed %d trees, left %d; want 2 and 2", rep.RemovedTrees, rep.RemainingTrees)
	}
	if _, err := os.Stat(c.treeLockPath(gone)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the lock file of a removed tree is left (%v)", err)
	}
	if ok, err := c.treeComplete(ctx, kept); err != nil || !ok {
		t.Fatalf("the kept tree is not complete after Prune: %v %v", ok, err)
	}
}

// Trees count against MaxSize and go before any result, least recently
// used first.
func TestPruneTreesMaxSize(t *testing.T) {
	ctx := t.Context()
	c := newCache(t)
	now := time.Now()
	old, recent := putString(t, c, "old"), putString(t, c, "recent")
	putAction(t, c, "old", now, old)
	putAction(t, c, "recent", now, recent)
	var calls atomic.Int32
	for i, d := range []cache.Digest{old, recent} {
		_, release, _ := useTree(t, c, d, fillWith(&calls))
		release()
		at := now.Add(time.Duration(i-2) * time.Hour)
		must(t, os.Chtimes(filepath.Join(c.treeDir(d), treeMarkerName), at, at))
	}
	m, err := readTreeMarker(c.treeDir(recent))
	must(t, err)
	// Room for the blobs and one tree.
	rep, err := c.Prune(ctx, PruneOptions{MaxSize: int64(len("old")+len("recent")) + m.Bytes, Grace: -1})
	if err != nil {
		t.Fatal(err)
	}
	exists := func(d cache.Digest) bool { _, err := os.Stat(c.treeDir(d)); return err == nil }
	if exists(old) || !exists(recent) || rep.RemovedActions != 0 || rep.RemovedTrees != 1 {
		t.Fatalf("Prune(): old tree %v, recent tree %v, %d results and %d trees removed; want the old tree gone only",
			exists(old), exists(recent), rep.RemovedActions, rep.RemovedTrees)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestAdoptFile(t *testing.T) {
	c := newCache(t)
	src := filepath.Join(c.Dir(), "work-out") // a step's output, on the cache's filesystem
	must(t, os.WriteFile(src, []byte("rootfs bytes"), 0o644))
	var tee strings.Builder
	d, n, err := c.AdoptFile(t.Context(), src, &tee)
	if err != nil {
		t.Fatalf("AdoptFile() = %v", err)
	}
	if want := putString(t, c, "rootfs bytes"); d != want || n != 12 || tee.String() != "rootfs bytes" {
		t.Fatalf("AdoptFile() = %s, %d, tee %q; want %s, 12, the bytes", d, n, tee.String(), want)
	}
	if _, err := os.Stat(src); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("AdoptFile() left the file (%v), want it moved", err)
	}
	if fi, err := os.Stat(c.BlobPath(d)); err != nil || fi.Mode().Perm() != blobPerm {
		t.Fatalf("blob = %v, %v; want mode %o", fi, err, blobPerm)
	}

	// A file of many copy buffers, synced while it is hashed: the digest,
	// the size and what the tee got are all of it.
	big := make([]byte, 5<<20+12345)
	for i := range big {
		big[i] = byte(i*7 + i>>13)
	}
	must(t, os.WriteFile(src, big, 0o644))
	teeHash := md5.New()
	d, n, err = c.AdoptFile(t.Context(), src, teeHash)
	if err != nil {
		t.Fatalf("AdoptFile() = %v", err)
	}
	if want := putString(t, c, string(big)); d != want || n != int64(len(big)) || !bytes.Equal(teeHash.Sum(nil), md5Sum(big)) {
		t.Fatalf("AdoptFile() = %s, %d, tee md5 %x; want %s, %d, %x", d, n, teeHash.Sum(nil), want, len(big), md5Sum(big))
	}
	if b, err := os.ReadFile(c.BlobPath(d)); err != nil || !bytes.Equal(b, big) {
		t.Fatalf("blob = %d bytes, %v; want the file", len(b), err)
	}

	// A file with another link stays where it is: the other name could
	// change the blob.
	must(t, os.WriteFile(src, []byte("linked"), 0o644))
	must(t, os.Link(src, src+".2"))
	if _, _, err := c.AdoptFile(t.Context(), src, nil); !errors.Is(err, ErrNotAdopted) {
		t.Fatalf("AdoptFile() of a linked file = %v, want ErrNotAdopted", err)
	}
	if b, err := os.ReadFile(src); err != nil || string(b) != "linked" {
		t.Fatalf("the linked file = %q, %v; want it as it was", b, err)
	}

	// A file on another filesystem stays too (the caller copies it).
	other, err := os.CreateTemp("/dev/shm", "adopt-")
	if err != nil {
		t.Logf("no other filesystem to try: %v", err)
		return
	}
	other.Close()
	defer os.Remove(other.Name())
	var a, b unix.Stat_t
	must(t, unix.Stat(other.Name(), &a))
	must(t, unix.Stat(c.Dir(), &b))
	if a.Dev == b.Dev {
		t.Log("/dev/shm is on the cache's filesystem: not tried")
		return
	}
	if _, _, err := c.AdoptFile(t.Context(), other.Name(), nil); !errors.Is(err, ErrNotAdopted) {
		t.Fatalf("AdoptFile() of a file on another filesystem = %v, want ErrNotAdopted", err)
	}
	if _, err := os.Stat(other.Name()); err != nil {
		t.Fatalf("the file on another filesystem: %v, want it left", err)
	}
}

func md5Sum(b []byte) []byte {
	s := md5.Sum(b)
	return s[:]
}

// fingerprintReference is fingerprint as it was first written: the
// markers of trees kept before must stay valid.
func fingerprintReference(t *testing.T, root string) treeMarker {
	t.Helper()
	var m treeMarker
	h := sha256.New()
	seen := map[uint64]bool{}
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		rel := strings.TrimPrefix(p[len(root):], "/")
		fmt.Fprintf(h, "%q %o %d:%d %d %d %d %d %d.%09d %d.%09d\n", rel, st.Mode, st.Uid, st.Gid, st.Size,
			st.Ino, st.Nlink, st.Rdev, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
		m.Entries++
		if st.Nlink > 1 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		m.Bytes += st.Blocks * 512
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	m.Stat = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return m
}

// fingerprint digests a tree as it always did: files, nested and empty
// directories, symlinks (to a directory too: not followed), hard links,
// a fifo and a device, names that need quoting, times before 1970.
func TestFingerprintAsBefore(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	for _, d := range []string{"a/b/c", "empty", "z", "sp ace/\"q\"", "nl\nx/\xff\xfe"} {
		must(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	for i, f := range []string{"a/f", "a/b/g", "a/b/c/h", "z/big", "sp ace/\"q\"/tab\tx", "nl\nx/\xff\xfe/ü", "A", "a/B"} {
		must(t, os.WriteFile(filepath.Join(root, f), bytes.Repeat([]byte{byte(i)}, i*5000), 0o640))
	}
	must(t, os.Link(filepath.Join(root, "a/f"), filepath.Join(root, "z/linked")))
	must(t, os.Symlink("../a", filepath.Join(root, "z/dirlink")))
	must(t, os.Symlink("nowhere", filepath.Join(root, "dangling")))
	must(t, unix.Mkfifo(filepath.Join(root, "fifo"), 0o600))
	if err := unix.Mknod(filepath.Join(root, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Logf("no device node (%v): the rest is compared", err)
	}
	must(t, os.Chtimes(filepath.Join(root, "A"), time.Unix(-100, 5), time.Unix(-100, 5)))
	must(t, os.Chown(filepath.Join(root, "a/B"), 12, 34))
	got, err := fingerprint(t.Context(), root)
	if err != nil {
		t.Fatal(err)
	}
	if want := fingerprintReference(t, root); got != want {
		t.Fatalf("fingerprint() = %+v, want %+v", got, want)
	}
	if got.Entries != 23 && got.Entries != 22 {
		t.Fatalf("fingerprint() counted %d entries, want 23 (22 without the device)", got.Entries)
	}
	// A change shows.
	must(t, os.Chmod(filepath.Join(root, "a/b/g"), 0o600))
	if again, err := fingerprint(t.Context(), root); err != nil || again.Stat == got.Stat {
		t.Fatalf("fingerprint() after a chmod = %+v, %v; want another digest", again, err)
	}
	// A file that is not a directory is fingerprinted alone, as WalkDir does.
	f := filepath.Join(root, "a/f")
	if g, err := fingerprint(t.Context(), f); err != nil || g != fingerprintReference(t, f) {
		t.Fatalf("fingerprint(a file) = %+v, %v; want %+v", g, err, fingerprintReference(t, f))
	}
}
