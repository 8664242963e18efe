package recipe

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imsbuild/imsbuild/internal/treehash"
	"github.com/imsbuild/imsbuild/internal/untar"
)

// makeRecipe writes a small kiwi description with a script, a symlink, a
// nested directory and a setgid directory.
func makeRecipe(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "recipe")
	files := []struct {
		name, content string
		mode          os.FileMode
	}{
		{"config.xml", "<image schemaversion=\"7.4\" name=\"node\"/>\n", 0o644},
		{"config.sh", "#!/bin/sh\nexit 0\n", 0o755},
		{"root/etc/motd", "hello\n", 0o600},
		{"root/etc/b.conf", "b\n", 0o644},
		{"root/etc/a.conf", "a\n", 0o644},
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.content), f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil { // past the umask
			t.Fatal(err)
		}
	}
	if err := os.Symlink("motd", filepath.Join(dir, "root/etc/issue")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "root/srv"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "root/srv"), os.ModeSetgid|0o2775); err != nil {
		t.Fatal(err)
	}
	return dir
}

func archive(t *testing.T, dir string, opts ...Option) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Archive(t.Context(), dir, &b, opts...); err != nil {
		t.Fatalf("Archive(%s) error: %v", dir, err)
	}
	return b.Bytes()
}

type entry struct {
	Name, Linkname, Uname, Gname string
	Type                         byte
	Mode                         int64
	Uid, Gid                     int
	ModTime                      int64
	Content                      string
}

func entries(t *testing.T, tgz []byte) []entry {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("gzip header name %q mtime %v, want none", zr.Name, zr.ModTime)
	}
	tr := tar.NewReader(zr)
	var out []entry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, entry{h.Name, h.Linkname, h.Uname, h.Gname, h.Typeflag, h.Mode, h.Uid, h.Gid, h.ModTime.Unix(), string(b)})
	}
	return out
}

func TestArchiveEntries(t *testing.T) {
	dir := makeRecipe(t)
	r := func(name string, mode int64, content string) entry {
		return entry{Name: name, Type: tar.TypeReg, Mode: mode, Content: content, Uname: "root", Gname: "root"}
	}
	d := func(name string, mode int64) entry {
		return entry{Name: name, Type: tar.TypeDir, Mode: mode, Uname: "root", Gname: "root"}
	}
	want := []entry{
		r("config.sh", 0o755, "#!/bin/sh\nexit 0\n"),
		r("config.xml", 0o644, "<image schemaversion=\"7.4\" name=\"node\"/>\n"),
		d("root/", 0o755),
		d("root/etc/", 0o755),
		r("root/etc/a.conf", 0o644, "a\n"),
		r("root/etc/b.conf", 0o644, "b\n"),
		{Name: "root/etc/issue", Linkname: "motd", Type: tar.TypeSymlink, Mode: 0o777, Uname: "root", Gname: "root"},
		r("root/etc/motd", 0o600, "hello\n"),
		d("root/srv/", 0o2775),
	}
	tests := []struct {
		name  string
		opts  []Option
		mtime int64
	}{
		{"epoch", nil, 0},
		{"source date epoch", []Option{WithModTime(time.Unix(1700000000, 999))}, 1700000000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := make([]entry, len(want))
			for i, e := range want {
				e.ModTime = tc.mtime
				w[i] = e
			}
			if diff := cmp.Diff(w, entries(t, archive(t, dir, tc.opts...))); diff != "" {
				t.Errorf("Archive() entries mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// Two archives of the same tree are the same bytes, whatever the mtimes,
// and a content change changes them.
func TestArchiveReproducible(t *testing.T) {
	dir := makeRecipe(t)
	first := archive(t, dir)
	if !bytes.Equal(first, archive(t, dir)) {
		t.Fatal("two archives of the same tree differ")
	}
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	for _, p := range []string{"config.xml", "root/etc", "root/srv", "root"} {
		if err := os.Chtimes(filepath.Join(dir, p), old, old); err != nil {
			t.Fatal(err)
		}
	}
	// The same tree made again elsewhere, in another creation order.
	other := makeRecipe(t)
	for _, d := range []string{dir, other} {
		if got := archive(t, d); !bytes.Equal(got, first) {
			t.Errorf("archive of %s after mtime changes differs from the first", d)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "root/etc/a.conf"), []byte("A\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(archive(t, dir), first) {
		t.Error("archive did not change with a file's content")
	}
	if err := os.Chmod(filepath.Join(other, "config.sh"), 0o700); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(archive(t, other), first) {
		t.Error("archive did not change with a file's mode")
	}
}

// The archive extracts (as the kiwi recipe fetch does) to the same tree.
func TestArchiveExtracts(t *testing.T) {
	dir := makeRecipe(t)
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if err := untar.Extract(t.Context(), bytes.NewReader(mustGunzip(t, archive(t, link))), dst, untar.Options{}); err != nil {
		t.Fatalf("Extract() error: %v", err)
	}
	want, err := treehash.Dir(t.Context(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := treehash.Dir(t.Context(), dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("extracted tree hash = %s, want %s (the source's)", got, want)
	}
}

func mustGunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestArchiveErrors(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) string
		ctx   func(context.Context) context.Context
		opts  []Option
		want  string
	}{{
		name: "fifo",
		setup: func(t *testing.T, dir string) string {
			if err := syscall.Mkfifo(filepath.Join(dir, "root/pipe"), 0o644); err != nil {
				t.Fatal(err)
			}
			return dir
		},
		want: "root/pipe: p--------- is not a file, directory or symlink",
	}, {
		name:  "missing",
		setup: func(t *testing.T, dir string) string { return filepath.Join(dir, "nope") },
		want:  "no such file or directory",
	}, {
		name:  "not a directory",
		setup: func(t *testing.T, dir string) string { return filepath.Join(dir, "config.xml") },
		want:  "not a directory",
	}, {
		name: "cancelled",
		ctx: func(ctx context.Context) context.Context {
			ctx, cancel := context.WithCancel(ctx)
			cancel()
			return ctx
		},
		want: "context canceled",
	}, {
		name: "mtime before epoch",
		opts: []Option{WithModTime(time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC))},
		want: "before the Unix epoch",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := makeRecipe(t)
			if tc.setup != nil {
				dir = tc.setup(t, dir)
			}
			ctx := t.Context()
			if tc.ctx != nil {
				ctx = tc.ctx(ctx)
			}
			err := Archive(ctx, dir, io.Discard, tc.opts...)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "archive "+dir+": ") {
				t.Errorf("Archive() error = %v, want \"archive %s: …%s…\"", err, dir, tc.want)
			}
		})
	}
}

func TestRecipeID(t *testing.T) {
	const sum = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	id := RecipeID("node", sum)
	if len(id) != 36 || id[14] != '5' {
		t.Errorf("RecipeID() = %q, want a version 5 UUID", id)
	}
	tests := []struct {
		name, other string
		same        bool
	}{
		{"same", RecipeID("node", sum), true},
		{"digest form", RecipeID("node", "sha256:"+sum), true},
		{"upper case", RecipeID("node", strings.ToUpper(sum)), true},
		{"other name", RecipeID("node2", sum), false},
		{"other digest", RecipeID("node", strings.Repeat("f", 64)), false},
	}
	for _, tc := range tests {
		if (tc.other == id) != tc.same {
			t.Errorf("%s: RecipeID() = %s vs %s, want same=%v", tc.name, tc.other, id, tc.same)
		}
	}
}
