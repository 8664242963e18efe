package cachetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	digest "github.com/opencontainers/go-digest"

	"github.com/imsbuild/imsbuild/cache"
)

// Open returns a new, empty store and action cache.
type Open func(t *testing.T) (cache.Store, cache.ActionCache)

// Run runs the conformance suite against the backend made by open.
func Run(t *testing.T, open func(t *testing.T) (cache.Store, cache.ActionCache)) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open Open)
	}{
		{"PutOpen", testPutOpen},
		{"PutWant", testPutWant},
		{"PutLarge", testPutLarge},
		{"PutCancelled", testPutCancelled},
		{"PutConcurrent", testPutConcurrent},
		{"PutFileCopies", testPutFileCopies},
		{"Missing", testMissing},
		{"CorruptOnRead", testCorruptOnRead},
		{"Materialize", testMaterialize},
		{"ActionPutGet", testActionPutGet},
		{"ActionMissingBlob", testActionMissingBlob},
		{"ActionCorruptBlob", testActionCorruptBlob},
		{"ActionKeys", testActionKeys},
		{"ActionLongKeys", testActionLongKeys},
		{"LastKey", testLastKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

// Digest returns the digest of b.
func Digest(b []byte) cache.Digest {
	return cache.Digest(digest.FromBytes(b))
}

func put(t *testing.T, s cache.Store, content string) cache.Digest {
	t.Helper()
	d, n, err := s.Put(t.Context(), strings.NewReader(content), "")
	if err != nil {
		t.Fatalf("Put(%q) = %v", content, err)
	}
	if want := Digest([]byte(content)); d != want || n != int64(len(content)) {
		t.Fatalf("Put(%q) = %s, %d; want %s, %d", content, d, n, want, len(content))
	}
	return d
}

func read(t *testing.T, s cache.Store, d cache.Digest) ([]byte, error) {
	t.Helper()
	rc, err := s.Open(t.Context(), d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func testPutOpen(t *testing.T, open Open) {
	s, _ := open(t)
	for _, content := range []string{"", "x", "rootfs bytes\x00\xff"} {
		d := put(t, s, content)
		got, err := read(t, s, d)
		if err != nil || string(got) != content {
			t.Errorf("Open(%s) = %q, %v; want %q", d, got, err, content)
		}
		if n, err := s.Stat(t.Context(), d); err != nil || n != int64(len(content)) {
			t.Errorf("Stat(%s) = %d, %v; want %d", d, n, err, len(content))
		}
		// Putting it again is fine and changes nothing.
		if d2 := put(t, s, content); d2 != d {
			t.Errorf("second Put() = %s, want %s", d2, d)
		}
	}
}

func testPutWant(t *testing.T, open Open) {
	s, _ := open(t)
	content := "kernel"
	want := Digest([]byte(content))
	other := Digest([]byte("initrd"))
	tests := []struct {
		name    string
		want    cache.Digest
		wantErr error
	}{
		{name: "empty want", want: ""},
		{name: "right want", want: want},
		{name: "wrong want", want: other, wantErr: cache.ErrCorrupt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, _, err := s.Put(t.Context(), strings.NewReader(content), tc.want)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Put(want %s) = %v, want %v", tc.want, err, tc.wantErr)
				}
				if _, err := s.Stat(t.Context(), tc.want); !errors.Is(err, cache.ErrNotFound) {
					t.Errorf("Stat(%s) after mismatch = %v, want ErrNotFound", tc.want, err)
				}
				return
			}
			if err != nil || d != want {
				t.Errorf("Put(want %s) = %s, %v; want %s", tc.want, d, err, want)
			}
		})
	}
	// Nothing is stored on mismatch, not even under the real digest.
	fresh := "never stored"
	if _, _, err := s.Put(t.Context(), strings.NewReader(fresh), other); !errors.Is(err, cache.ErrCorrupt) {
		t.Fatalf("Put(wrong want) = %v, want ErrCorrupt", err)
	}
	if _, err := s.Stat(t.Context(), Digest([]byte(fresh))); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("Stat(real digest) after mismatch = %v, want ErrNotFound", err)
	}
	if _, _, err := s.Put(t.Context(), strings.NewReader(content), "sha256:nothex"); err == nil {
		t.Errorf("Put(invalid want) = nil error")
	}
}

// pattern is an endless deterministic byte stream.
type pattern struct{ i int }

func (p *pattern) Read(b []byte) (int, error) {
	for j := range b {
		b[j] = byte(p.i*7 + p.i>>9)
		p.i++
	}
	return len(b), nil
}

func testPutLarge(t *testing.T, open Open) {
	s, _ := open(t)
	const size = 24<<20 + 123
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(&pattern{}, size)); err != nil {
		t.Fatal(err)
	}
	want := cache.Digest(digest.NewDigest(digest.SHA256, h))
	d, n, err := s.Put(t.Context(), io.LimitReader(&pattern{}, size), want)
	if err != nil || d != want || n != size {
		t.Fatalf("Put(24 MiB) = %s, %d, %v; want %s, %d", d, n, err, want, size)
	}
	rc, err := s.Open(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h.Reset()
	if m, err := io.Copy(h, rc); err != nil || m != size {
		t.Fatalf("read back %d bytes, %v; want %d", m, err, size)
	}
}

// cancelAfter cancels a context once n bytes have been read.
type cancelAfter struct {
	r      io.Reader
	n      int
	cancel func()
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.n -= n; c.n <= 0 {
		c.cancel()
	}
	return n, err
}

func testPutCancelled(t *testing.T, open Open) {
	s, _ := open(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	r := &cancelAfter{r: io.LimitReader(&pattern{}, 8<<20), n: 1 << 20, cancel: cancel}
	if _, _, err := s.Put(ctx, r, ""); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put(cancelled midway) = %v, want context.Canceled", err)
	}
	h := sha256.New()
	io.Copy(h, io.LimitReader(&pattern{}, 8<<20))
	d := cache.Digest(digest.NewDigest(digest.SHA256, h))
	if _, err := s.Stat(t.Context(), d); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("Stat() after cancelled Put = %v, want ErrNotFound", err)
	}
}

func testPutConcurrent(t *testing.T, open Open) {
	s, _ := open(t)
	content := strings.Repeat("same blob from many writers ", 10000)
	want := Digest([]byte(content))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			d, _, err := s.Put(t.Context(), strings.NewReader(content), want)
			if err != nil || d != want {
				t.Errorf("concurrent Put() = %s, %v; want %s", d, err, want)
			}
		})
	}
	wg.Wait()
	if got, err := read(t, s, want); err != nil || string(got) != content {
		t.Errorf("Open() after concurrent puts: %d bytes, %v", len(got), err)
	}
}

func testPutFileCopies(t *testing.T, open Open) {
	s, _ := open(t)
	p := filepath.Join(t.TempDir(), "rootfs")
	if err := os.WriteFile(p, []byte("original"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, n, err := s.PutFile(t.Context(), p)
	if want := Digest([]byte("original")); err != nil || d != want || n != 8 {
		t.Fatalf("PutFile() = %s, %d, %v; want %s, 8", d, n, err, want)
	}
	// Editing the source in place must not reach the cache.
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("ORIG"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got, err := read(t, s, d); err != nil || string(got) != "original" {
		t.Errorf("Open() after editing the source = %q, %v; want original", got, err)
	}
	if _, _, err := s.PutFile(t.Context(), filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("PutFile(missing) = %v, want ErrNotExist", err)
	}
	if _, _, err := s.PutFile(t.Context(), t.TempDir()); err == nil {
		t.Errorf("PutFile(dir) = nil error")
	}
}

func testMissing(t *testing.T, open Open) {
	s, ac := open(t)
	d := Digest([]byte("absent"))
	if _, err := s.Open(t.Context(), d); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("Open(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.Stat(t.Context(), d); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("Stat(missing) = %v, want ErrNotFound", err)
	}
	dst := filepath.Join(t.TempDir(), "out")
	if err := s.Materialize(t.Context(), d, dst, false); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("Materialize(missing) = %v, want ErrNotFound", err)
	}
	if _, err := os.Lstat(dst); !os.IsNotExist(err) {
		t.Errorf("Materialize(missing) left %s", dst)
	}
	if _, err := ac.Get(t.Context(), strings.Repeat("ab", 32)); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("Get(missing) = %v, want ErrNotFound", err)
	}
}

// corrupt overwrites the stored blob d with content of the same size.
func corrupt(t *testing.T, s cache.Store, d cache.Digest) {
	t.Helper()
	bp, ok := s.(interface{ BlobPath(cache.Digest) string })
	if !ok {
		t.Skip("store cannot be damaged from a test (no BlobPath)")
	}
	p := bp.BlobPath(d)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, bytes.Repeat([]byte{'X'}, int(fi.Size())), 0o644); err != nil {
		t.Fatal(err)
	}
}

func testCorruptOnRead(t *testing.T, open Open) {
	const content = "squashfs image"
	tests := []struct {
		name string
		use  func(s cache.Store, d cache.Digest, dst string) error
	}{
		{"Open", func(s cache.Store, d cache.Digest, _ string) error { _, err := read(t, s, d); return err }},
		{"Materialize", func(s cache.Store, d cache.Digest, dst string) error {
			return s.Materialize(t.Context(), d, dst, false)
		}},
		// A hard link or reflink is not read: it must be checked all the same.
		{"Materialize read-only", func(s cache.Store, d cache.Digest, dst string) error {
			return s.Materialize(t.Context(), d, dst, true)
		}},
		// Neither is a file used in place.
		{"UseFile", func(s cache.Store, d cache.Digest, dst string) error {
			return s.(cache.FileUser).UseFile(t.Context(), d, func(p string) error {
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				return os.WriteFile(dst, b, 0o644)
			})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := open(t)
			if _, ok := s.(cache.FileUser); !ok && tc.name == "UseFile" {
				t.Skip("not a cache.FileUser")
			}
			d := put(t, s, content)
			// Used once intact first: a backend remembering that must still
			// notice the change.
			intact := filepath.Join(t.TempDir(), "intact")
			if err := tc.use(s, d, intact); err != nil {
				t.Fatalf("%s(intact) = %v", tc.name, err)
			}
			if got, err := os.ReadFile(intact); tc.name != "Open" && string(got) != content {
				t.Fatalf("%s(intact) gave %q, %v; want %q", tc.name, got, err, content)
			}
			corrupt(t, s, d)
			dst := filepath.Join(t.TempDir(), "out")
			if err := tc.use(s, d, dst); !errors.Is(err, cache.ErrCorrupt) {
				t.Errorf("%s(corrupt) = %v, want ErrCorrupt", tc.name, err)
			}
			if _, err := os.Lstat(dst); !os.IsNotExist(err) {
				t.Errorf("%s(corrupt) left %s", tc.name, dst)
			}
			// The corrupt blob is never served again: gone, or still refused.
			if got, err := read(t, s, d); !errors.Is(err, cache.ErrNotFound) && !errors.Is(err, cache.ErrCorrupt) {
				t.Errorf("read after %s(corrupt) = %q, %v; want ErrNotFound or ErrCorrupt", tc.name, got, err)
			}
			// Putting the real content again heals the blob.
			put(t, s, content)
			if got, err := read(t, s, d); err != nil || string(got) != content {
				t.Errorf("read after re-put = %q, %v; want the original", got, err)
			}
		})
	}
}

// testActionCorruptBlob: a result whose blob was damaged in place is a miss
// (so the step is built again), and so is a result whose preimage names the
// damaged blob: it may have been built from the corrupt bytes.
func testActionCorruptBlob(t *testing.T, open Open) {
	s, ac := open(t)
	parent, other := put(t, s, "parent rootfs"), put(t, s, "child rootfs")
	log := put(t, s, "log")
	parentKey, childKey, otherKey := fmt.Sprintf("%064x", 1), fmt.Sprintf("%064x", 2), fmt.Sprintf("%064x", 3)
	if err := ac.Put(t.Context(), parentKey, []byte(`{"step":"parent"}`), result(map[string]cache.Digest{"rootfs": parent}, log)); err != nil {
		t.Fatal(err)
	}
	childPre := fmt.Appendf(nil, `{"step":"child","parent":{"rootfs":%q}}`, parent)
	if err := ac.Put(t.Context(), childKey, childPre, result(map[string]cache.Digest{"rootfs": other}, log)); err != nil {
		t.Fatal(err)
	}
	if err := ac.Put(t.Context(), otherKey, []byte(`{"step":"other"}`), result(map[string]cache.Digest{"rootfs": other}, log)); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{parentKey, childKey, otherKey} {
		if _, err := ac.Get(t.Context(), k); err != nil {
			t.Fatalf("Get(%s) before the damage = %v", k[62:], err)
		}
	}
	corrupt(t, s, parent)
	if _, err := ac.Get(t.Context(), parentKey); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("Get(parent) with a corrupt output = %v, want ErrNotFound", err)
	}
	if _, err := ac.Get(t.Context(), childKey); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("Get(child) built on a corrupt blob = %v, want ErrNotFound", err)
	}
	if _, err := ac.Get(t.Context(), otherKey); err != nil {
		t.Errorf("Get(unrelated) = %v, want a hit", err)
	}
}

func testMaterialize(t *testing.T, open Open) {
	s, _ := open(t)
	content := "initrd content"
	d := put(t, s, content)
	tests := []struct {
		name     string
		readOnly bool
		existing string // content already at dst
	}{
		{name: "writable"},
		{name: "read-only", readOnly: true},
		{name: "writable over existing", existing: "old old old old old"},
		{name: "read-only over existing", readOnly: true, existing: "old"},
		{name: "into new subdir", readOnly: false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			dst := filepath.Join(dir, fmt.Sprintf("sub%d", i), "initrd")
			if tc.existing != "" {
				os.MkdirAll(filepath.Dir(dst), 0o755)
				if err := os.WriteFile(dst, []byte(tc.existing), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Materialize(t.Context(), d, dst, tc.readOnly); err != nil {
				t.Fatalf("Materialize() = %v", err)
			}
			// Twice in a row is fine too.
			if err := s.Materialize(t.Context(), d, dst, tc.readOnly); err != nil {
				t.Fatalf("second Materialize() = %v", err)
			}
			got, err := os.ReadFile(dst)
			if err != nil || string(got) != content {
				t.Fatalf("ReadFile(dst) = %q, %v; want %q", got, err, content)
			}
			fi, err := os.Stat(dst)
			if err != nil {
				t.Fatal(err)
			}
			if w := fi.Mode().Perm()&0o222 != 0; w == tc.readOnly {
				t.Errorf("dst mode %v, readOnly %v", fi.Mode(), tc.readOnly)
			}
			ents, _ := os.ReadDir(filepath.Dir(dst))
			if len(ents) != 1 {
				t.Errorf("dst dir has %d entries, want 1 (temp file left?)", len(ents))
			}
			if !tc.readOnly {
				// A writable copy may be edited without touching the cache.
				if err := os.WriteFile(dst, []byte("edited content"), 0o644); err != nil {
					t.Fatal(err)
				}
				if got, err := read(t, s, d); err != nil || string(got) != content {
					t.Errorf("Open() after editing a materialized copy = %q, %v", got, err)
				}
			}
		})
	}
}

func result(outputs map[string]cache.Digest, log cache.Digest) *cache.ActionResult {
	res := &cache.ActionResult{
		Step:    "image.base/pack",
		Outputs: map[string]cache.Output{},
		Builder: "pack/v1",
		Created: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
		Log:     log,
	}
	for name, d := range outputs {
		res.Outputs[name] = cache.Output{Digest: d, Size: 1, MediaType: "application/vnd.cray.image." + name, MD5: "00"}
	}
	return res
}

func testActionPutGet(t *testing.T, open Open) {
	s, ac := open(t)
	rootfs, kernel, log := put(t, s, "r"), put(t, s, "k"), put(t, s, "log")
	key := strings.Repeat("0123456789abcdef", 4)
	want := result(map[string]cache.Digest{"rootfs": rootfs, "kernel": kernel}, log)
	pre := []byte(`{"type":"imsbuild/pack/v1","inputs":{"rootfs":"<sha>"}}`)
	if err := ac.Put(t.Context(), key, pre, want); err != nil {
		t.Fatalf("Put() = %v", err)
	}
	got, err := ac.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get() = %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Get() mismatch (-want +got):\n%s", diff)
	}
	// Overwriting a key is allowed; the newest result wins.
	want2 := result(map[string]cache.Digest{"rootfs": kernel}, "")
	if err := ac.Put(t.Context(), key, pre, want2); err != nil {
		t.Fatalf("second Put() = %v", err)
	}
	if got, err := ac.Get(t.Context(), key); err != nil || !cmp.Equal(want2, got) {
		t.Errorf("Get() after overwrite = %+v, %v; want %+v", got, err, want2)
	}
	if _, err := ac.Get(t.Context(), strings.Repeat("f", 64)); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("Get(other key) = %v, want ErrNotFound", err)
	}
}

func testActionMissingBlob(t *testing.T, open Open) {
	s, ac := open(t)
	present := put(t, s, "present")
	absent := Digest([]byte("absent"))
	tests := []struct {
		name string
		res  *cache.ActionResult
	}{
		{name: "output", res: result(map[string]cache.Digest{"rootfs": present, "kernel": absent}, "")},
		{name: "log", res: result(map[string]cache.Digest{"rootfs": present}, absent)},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := fmt.Sprintf("%064x", i+1)
			if err := ac.Put(t.Context(), key, []byte(`{}`), tc.res); !errors.Is(err, cache.ErrNotFound) || !strings.Contains(err.Error(), string(absent)) {
				t.Errorf("Put() with a missing blob = %v, want ErrNotFound naming %s", err, absent)
			}
			if _, err := ac.Get(t.Context(), key); !errors.Is(err, cache.ErrNotFound) {
				t.Errorf("Get() after a refused Put = %v, want ErrNotFound", err)
			}
		})
	}
}

func testLastKey(t *testing.T, open Open) {
	_, ac := open(t)
	ctx := t.Context()
	steps := []string{"image.base/build-image", "image.base/pack", "publish:dir.local", "weird step/../name ü"}
	for _, step := range steps {
		if _, _, err := ac.LastKey(ctx, step); !errors.Is(err, cache.ErrNotFound) {
			t.Errorf("LastKey(%q) before Set = %v, want ErrNotFound", step, err)
		}
	}
	for i, step := range steps {
		for gen := range 2 {
			key := fmt.Sprintf("%063x%d", i, gen)
			pre := fmt.Appendf(nil, `{"step":%q,"gen":%d,"html":"<&>"}`, step, gen)
			if err := ac.SetLastKey(ctx, step, key, pre); err != nil {
				t.Fatalf("SetLastKey(%q) = %v", step, err)
			}
		}
	}
	for i, step := range steps {
		key, pre, err := ac.LastKey(ctx, step)
		wantKey := fmt.Sprintf("%063x1", i)
		wantPre := fmt.Sprintf(`{"step":%q,"gen":1,"html":"<&>"}`, step)
		if err != nil || key != wantKey || string(pre) != wantPre {
			t.Errorf("LastKey(%q) = %s, %s, %v; want %s, %s", step, key, pre, err, wantKey, wantPre)
		}
	} // Setting the same record again is fine (a backend may skip the
	// write); a changed preimage under the same key is not skipped.
	step, key := steps[0], fmt.Sprintf("%063x1", 0)
	for _, pre := range []string{`{"step":"again"}`, `{"step":"again"}`, `{"step":"changed"}`} {
		if err := ac.SetLastKey(ctx, step, key, []byte(pre)); err != nil {
			t.Fatalf("SetLastKey(%q, %s) = %v", step, pre, err)
		}
		if k, got, err := ac.LastKey(ctx, step); err != nil || k != key || string(got) != pre {
			t.Errorf("LastKey(%q) = %s, %s, %v; want %s, %s", step, k, got, err, key, pre)
		}
	}
}

// testActionKeys: keys that are not plain names never reach a backend's
// naming (a path, an object key, a tag), and a nil result is refused.
func testActionKeys(t *testing.T, open Open) {
	s, ac := open(t)
	ctx := t.Context()
	res := result(map[string]cache.Digest{"rootfs": put(t, s, "r")}, "")
	for _, key := range []string{"", "../" + strings.Repeat("a", 64), ".hidden", "a/b", "a b", strings.Repeat("a", 201)} {
		if err := ac.Put(ctx, key, []byte(`{}`), res); err == nil {
			t.Errorf("Put(%q) = nil, want an invalid key error", key)
		}
		if r, err := ac.Get(ctx, key); err == nil {
			t.Errorf("Get(%q) = %+v, want an error", key, r)
		}
		if err := ac.SetLastKey(ctx, "step", key, []byte(`{}`)); err == nil {
			t.Errorf("SetLastKey(key %q) = nil, want an invalid key error", key)
		}
	}
	if err := ac.Put(ctx, strings.Repeat("a", 64), []byte(`{}`), nil); err == nil {
		t.Errorf("Put(nil result) = nil, want an error")
	}
	if _, _, err := ac.LastKey(ctx, ""); err == nil || errors.Is(err, cache.ErrNotFound) {
		t.Errorf("LastKey(\"\") = %v, want an error other than ErrNotFound", err)
	}
}

// testActionLongKeys: keys longer than a sha256 (up to 200 characters) that
// share a long prefix never return each other's result (OCI tags hold only
// the first 64 characters; a backend may then miss the older key, never
// answer it with the newer one's result).
func testActionLongKeys(t *testing.T, open Open) {
	s, ac := open(t)
	ctx := t.Context()
	prefix := strings.Repeat("0123456789abcdef", 4)
	k1, k2 := prefix+strings.Repeat("1", 136), prefix+strings.Repeat("2", 136)
	r1 := result(map[string]cache.Digest{"rootfs": put(t, s, "one")}, "")
	r2 := result(map[string]cache.Digest{"rootfs": put(t, s, "two")}, "")
	if err := ac.Put(ctx, k1, []byte(`{"k":1}`), r1); err != nil {
		t.Fatalf("Put(k1) = %v", err)
	}
	if got, err := ac.Get(ctx, k1); err != nil || !cmp.Equal(r1, got) {
		t.Fatalf("Get(k1) = %+v, %v; want %+v", got, err, r1)
	}
	if got, err := ac.Get(ctx, prefix); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("Get(k1's prefix) = %+v, %v; want ErrNotFound", got, err)
	}
	if err := ac.Put(ctx, k2, []byte(`{"k":2}`), r2); err != nil {
		t.Fatalf("Put(k2) = %v", err)
	}
	if got, err := ac.Get(ctx, k2); err != nil || !cmp.Equal(r2, got) {
		t.Errorf("Get(k2) = %+v, %v; want %+v", got, err, r2)
	}
	if got, err := ac.Get(ctx, k1); err == nil && !cmp.Equal(r1, got) || err != nil && !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("Get(k1) after Put(k2) = %+v, %v; want k1's result or ErrNotFound", got, err)
	}
}

// RunLocker runs the conformance suite of cache.Locker against the locker
// made by open (local and tiered caches; remote ones have none).
func RunLocker(t *testing.T, open func(t *testing.T) cache.Locker) {
	t.Run("Lock", func(t *testing.T) { testLock(t, open(t)) })
}

func testLock(t *testing.T, ac cache.Locker) {
	ctx := t.Context()
	key, other := strings.Repeat("a", 64), strings.Repeat("b", 64)
	unlock, err := ac.Lock(ctx, key)
	if err != nil {
		t.Fatalf("Lock() = %v", err)
	}
	// Another key is independent.
	unlockOther, err := ac.Lock(ctx, other)
	if err != nil {
		t.Fatalf("Lock(other key) = %v", err)
	}
	unlockOther()

	// The same key waits, until its context ends.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if u, err := ac.Lock(short, key); !errors.Is(err, context.DeadlineExceeded) {
		if u != nil {
			u()
		}
		t.Fatalf("Lock(held key, 100ms) = %v, want DeadlineExceeded", err)
	}
	cancelled, cancel2 := context.WithCancel(ctx)
	cancel2()
	if u, err := ac.Lock(cancelled, key); !errors.Is(err, context.Canceled) {
		if u != nil {
			u()
		}
		t.Fatalf("Lock(held key, cancelled) = %v, want Canceled", err)
	}

	// A waiter gets the lock once it is released, and not before.
	var mu sync.Mutex
	released := false
	got := make(chan error, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		u, err := ac.Lock(wctx, key)
		if err == nil {
			mu.Lock()
			if !released {
				err = errors.New("acquired while still held")
			}
			mu.Unlock()
			u()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("waiter returned %v while the lock was held", err)
	case <-time.After(50 * time.Millisecond):
	}
	mu.Lock()
	released = true
	unlock()
	mu.Unlock()
	if err := <-got; err != nil {
		t.Errorf("waiter: %v", err)
	}
}
