package kiwi

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imsbuild/imsbuild/internal/untar"
)

// tarEntry is one entry of a test archive.
type tarEntry struct {
	name, body, link string
	typ              byte
	mode             int64
}

// writeTgz writes a gzip'd tar of entries to a file in a temp dir.
func writeTgz(t *testing.T, entries []tarEntry) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "recipe.tgz")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, Size: int64(len(e.body))}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
		}
		if e.typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, c := range []interface{ Close() error }{tw, zw, f} {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// listTree returns "path mode [-> target | content]" for every entry.
func listTree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		line := rel + " " + fi.Mode().String()
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			line += " " + strings.TrimSpace(string(b))
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var wantRecipe = []string{
	"config.sh -rwxr-xr-x #!/bin/sh",
	"config.xml -rw-r--r-- <image/>",
	"root drwxr-xr-x",
	"root/etc drwxr-xr-x",
	"root/etc/motd -rw-r--r-- hi",
	"root/etc/motd.link Lrwxrwxrwx -> motd",
}

func TestFetchRecipeDir(t *testing.T) {
	src := t.TempDir()
	mustWrite(t, filepath.Join(src, "config.xml"), "<image/>\n", 0o644)
	mustWrite(t, filepath.Join(src, "config.sh"), "#!/bin/sh\n", 0o755)
	mustWrite(t, filepath.Join(src, "root/etc/motd"), "hi\n", 0o644)
	if err := os.Symlink("motd", filepath.Join(src, "root/etc/motd.link")); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "recipe")
	if err := FetchRecipe(t.Context(), src, dst); err != nil {
		t.Fatalf("FetchRecipe() = %v", err)
	}
	if diff := cmp.Diff(wantRecipe, listTree(t, dst)); diff != "" {
		t.Errorf("fetched tree (-want +got):\n%s", diff)
	}
}

func TestFetchRecipeTgz(t *testing.T) {
	src := writeTgz(t, []tarEntry{
		{name: "config.xml", body: "<image/>\n", typ: tar.TypeReg},
		{name: "config.sh", body: "#!/bin/sh\n", typ: tar.TypeReg, mode: 0o755},
		{name: "root/", typ: tar.TypeDir, mode: 0o755},
		{name: "root/etc/", typ: tar.TypeDir, mode: 0o755},
		{name: "root/etc/motd", body: "hi\n", typ: tar.TypeReg},
		{name: "root/etc/motd.link", link: "motd", typ: tar.TypeSymlink, mode: 0o777},
	})
	dst := t.TempDir() // existing and empty is fine
	if err := FetchRecipe(t.Context(), src, dst); err != nil {
		t.Fatalf("FetchRecipe() = %v", err)
	}
	if diff := cmp.Diff(wantRecipe, listTree(t, dst)); diff != "" {
		t.Errorf("fetched tree (-want +got):\n%s", diff)
	}
}

func TestFetchRecipeRefusesUnsafe(t *testing.T) {
	ok := tarEntry{name: "config.xml", body: "<image/>", typ: tar.TypeReg}
	tests := []struct {
		name    string
		entries []tarEntry
		want    error
	}{
		{"dotdot", []tarEntry{ok, {name: "../evil", body: "x", typ: tar.TypeReg}}, untar.ErrUnsafe},
		{"nested dotdot", []tarEntry{ok, {name: "root/../../evil", body: "x", typ: tar.TypeReg}}, untar.ErrUnsafe},
		{"absolute", []tarEntry{ok, {name: "/tmp/evil", body: "x", typ: tar.TypeReg}}, untar.ErrUnsafe},
		{"absolute symlink", []tarEntry{ok, {name: "root/etc", link: "/etc", typ: tar.TypeSymlink}}, ErrUnsafeEntry},
		{"escaping symlink", []tarEntry{ok, {name: "root/up", link: "../../..", typ: tar.TypeSymlink}}, ErrUnsafeEntry},
		{"write through symlink", []tarEntry{ok, {name: "root", link: "x", typ: tar.TypeSymlink}, {name: "root/evil", body: "x", typ: tar.TypeReg}}, untar.ErrUnsafe},
		{"char device", []tarEntry{ok, {name: "null", typ: tar.TypeChar}}, ErrUnsafeEntry},
		{"fifo", []tarEntry{ok, {name: "fifo", typ: tar.TypeFifo}}, ErrUnsafeEntry},
		{"hardlink outside", []tarEntry{ok, {name: "passwd", link: "/etc/passwd", typ: tar.TypeLink}}, untar.ErrUnsafe},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			dst := filepath.Join(parent, "a", "recipe")
			err := FetchRecipe(t.Context(), writeTgz(t, tc.entries), dst)
			if !errors.Is(err, tc.want) {
				t.Fatalf("FetchRecipe() = %v, want %v", err, tc.want)
			}
			for _, p := range []string{filepath.Join(parent, "evil"), filepath.Join(parent, "a", "evil"), "/tmp/evil"} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s was written outside the recipe", p)
				}
			}
		})
	}
}

func TestFetchRecipeDirRefusesEscapingSymlink(t *testing.T) {
	src := t.TempDir()
	mustWrite(t, filepath.Join(src, "config.xml"), "<image/>\n", 0o644)
	if err := os.Symlink("/etc/passwd", filepath.Join(src, "passwd")); err != nil {
		t.Fatal(err)
	}
	err := FetchRecipe(t.Context(), src, filepath.Join(t.TempDir(), "r"))
	if !errors.Is(err, ErrUnsafeEntry) {
		t.Fatalf("FetchRecipe() = %v, want ErrUnsafeEntry", err)
	}
}

func TestFetchRecipeErrors(t *testing.T) {
	full := t.TempDir()
	mustWrite(t, filepath.Join(full, "x"), "x", 0o644)
	src := t.TempDir()
	mustWrite(t, filepath.Join(src, "config.xml"), "<image/>", 0o644)
	tests := []struct {
		name, source, dst, want string
	}{
		{"s3", "s3://ims/recipes/1/recipe.tgz", t.TempDir(), "s3: recipe source not supported yet"},
		{"ims", "ims://recipes/1", t.TempDir(), "ims: recipe source not supported yet"},
		{"missing", filepath.Join(src, "nope.tgz"), t.TempDir(), "no such file"},
		{"not an archive", filepath.Join(src, "config.xml"), t.TempDir(), "not a tar"},
		{"dst not empty", src, full, "is not empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := FetchRecipe(t.Context(), tc.source, tc.dst)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("FetchRecipe() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func mustWrite(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
