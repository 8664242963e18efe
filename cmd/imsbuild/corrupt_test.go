package main

import (
	"bufio"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/local"
)

// rootfsOf returns the rootfs digest and key of step's cached result, from
// `cache ls --json`.
func rootfsOf(t *testing.T, dir, step string) (cache.Digest, string) {
	t.Helper()
	r := imsbuild(t, dir, "cache", "ls", "--json", ".")
	if r.code != 0 {
		t.Fatalf("cache ls exit %d\n%s", r.code, r.stderr)
	}
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	var d cache.Digest
	var key string
	for sc.Scan() {
		var e struct {
			Key     string
			Step    string
			Outputs map[string]cache.Output
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		if e.Step == step {
			d, key = e.Outputs["rootfs"].Digest, e.Key // the newest wins
		}
	}
	if d == "" {
		t.Fatalf("no cached %s in:\n%s", step, r.stdout)
	}
	return d, key
}

// publishedMD5s returns image id → md5 of its published rootfs.
func publishedMD5s(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	paths, _ := filepath.Glob(filepath.Join(dir, "out/boot-images/*/rootfs"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		s := md5.Sum(b)
		m[filepath.Base(filepath.Dir(p))] = hex.EncodeToString(s[:])
	}
	return m
}

// corruptBlob flips 4 bytes in the middle of a blob, keeping its size.
func corruptBlob(t *testing.T, dir string, d cache.Digest) {
	t.Helper()
	c, err := local.Open(filepath.Join(dir, ".imsbuild/cache"))
	if err != nil {
		t.Fatal(err)
	}
	p := c.BlobPath(d)
	b, err := os.ReadFile(p)
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
	mid := len(b) / 2
	if _, err := f.WriteAt([]byte{^b[mid], ^b[mid+1], ^b[mid+2], ^b[mid+3]}, int64(mid)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptParentVerifyRepairAndRebuild is the audit's case through the
// CLI: `cache verify` names the child built on the corrupt parent, --repair
// removes it with the parent, and the next build makes both again and
// publishes what the first build did.
func TestCorruptParentVerifyRepairAndRebuild(t *testing.T) {
	dir := example(t)
	if r := imsbuild(t, dir, "build", "--json", "."); r.code != 0 {
		t.Fatalf("build exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	clean := publishedMD5s(t, dir)
	parent, _ := rootfsOf(t, dir, "image.base")
	_, childKey := rootfsOf(t, dir, "image.compute")
	corruptBlob(t, dir, parent)

	r := imsbuild(t, dir, "cache", "verify", ".")
	if r.code != 1 || !strings.Contains(r.stdout, "corrupt blob "+string(parent)) ||
		!strings.Contains(r.stdout, "broken result "+childKey+": built from corrupt blob "+string(parent)) {
		t.Fatalf("cache verify exit %d, want 1 naming the parent blob and the child result:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r = imsbuild(t, dir, "cache", "verify", "--repair", "."); r.code != 0 {
		t.Fatalf("cache verify --repair exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r = imsbuild(t, dir, "cache", "verify", "."); r.code != 0 {
		t.Fatalf("cache verify after repair exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	r = imsbuild(t, dir, "build", "--json", ".")
	want := map[string]string{"image.base": "done", "image.compute": "done", "publish.dir.local": "done"}
	if got := events(t, r.stdout); r.code != 0 || !equal(got, want) {
		t.Fatalf("build after repair exit %d = %v, want %v\n%s", r.code, got, want, r.stderr)
	}
	if got := publishedMD5s(t, dir); !equal(got, clean) {
		t.Errorf("published rootfs md5s after repair and rebuild = %v, want %v", got, clean)
	}

	// Without verify: the build itself finds the damage.
	parent, _ = rootfsOf(t, dir, "image.base")
	corruptBlob(t, dir, parent)
	r = imsbuild(t, dir, "build", "--json", ".")
	if got := events(t, r.stdout); r.code != 0 || !equal(got, want) {
		t.Fatalf("build after the damage exit %d = %v, want %v\n%s", r.code, got, want, r.stderr)
	}
	if !strings.Contains(r.stdout, "cached result dropped") {
		t.Errorf("build after the damage did not say why it rebuilt:\n%s", r.stdout)
	}
	if got := publishedMD5s(t, dir); !equal(got, clean) {
		t.Errorf("published rootfs md5s after the damage = %v, want %v", got, clean)
	}
}
