package treehash

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/internal/testutil"
)

// base makes the tree every table case starts from.
func base(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	mustWrite(t, filepath.Join(root, "config.xml"), "<image/>", 0o644)
	mustWrite(t, filepath.Join(root, "root/etc/motd"), "hello", 0o644)
	mustWrite(t, filepath.Join(root, "root/usr/bin/tool"), "#!/bin/sh\n", 0o755)
	must(t, os.Symlink("tool", filepath.Join(root, "root/usr/bin/alias")))
	must(t, os.MkdirAll(filepath.Join(root, "root/empty"), 0o755))
	return root
}

func TestDirChanges(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, root string)
		same   bool
	}{
		{name: "nothing", change: func(t *testing.T, root string) {}, same: true},
		{name: "mtime only", same: true, change: func(t *testing.T, root string) {
			old := time.Now().Add(-48 * time.Hour)
			must(t, os.Chtimes(filepath.Join(root, "root/etc/motd"), old, old))
			must(t, os.Chtimes(filepath.Join(root, "root"), old, old))
		}},
		{name: "rewrite same content", same: true, change: func(t *testing.T, root string) {
			mustWrite(t, filepath.Join(root, "root/etc/motd"), "hello", 0o644)
		}},
		{name: "content", change: func(t *testing.T, root string) {
			mustWrite(t, filepath.Join(root, "root/etc/motd"), "hellO", 0o644)
		}},
		{name: "mode", change: func(t *testing.T, root string) {
			must(t, os.Chmod(filepath.Join(root, "root/etc/motd"), 0o600))
		}},
		{name: "setuid", change: func(t *testing.T, root string) {
			must(t, os.Chmod(filepath.Join(root, "root/usr/bin/tool"), os.ModeSetuid|0o755))
		}},
		{name: "sticky dir", change: func(t *testing.T, root string) {
			must(t, os.Chmod(filepath.Join(root, "root/empty"), os.ModeSticky|0o755))
		}},
		{name: "root dir mode", change: func(t *testing.T, root string) {
			must(t, os.Chmod(root, 0o750))
		}},
		{name: "symlink target", change: func(t *testing.T, root string) {
			p := filepath.Join(root, "root/usr/bin/alias")
			must(t, os.Remove(p))
			must(t, os.Symlink("./tool", p))
		}},
		{name: "rename file", change: func(t *testing.T, root string) {
			must(t, os.Rename(filepath.Join(root, "root/etc/motd"), filepath.Join(root, "root/etc/motd2")))
		}},
		{name: "move file to other dir", change: func(t *testing.T, root string) {
			must(t, os.Rename(filepath.Join(root, "root/etc/motd"), filepath.Join(root, "root/empty/motd")))
		}},
		{name: "add empty dir", change: func(t *testing.T, root string) {
			must(t, os.Mkdir(filepath.Join(root, "root/new"), 0o755))
		}},
		{name: "remove empty dir", change: func(t *testing.T, root string) {
			must(t, os.Remove(filepath.Join(root, "root/empty")))
		}},
		{name: "file becomes symlink to same content", change: func(t *testing.T, root string) {
			p := filepath.Join(root, "root/etc/motd")
			mustWrite(t, filepath.Join(root, "motd.real"), "hello", 0o644)
			must(t, os.Remove(p))
			must(t, os.Symlink("../../motd.real", p))
		}},
		{name: "add empty file", change: func(t *testing.T, root string) {
			mustWrite(t, filepath.Join(root, "x"), "", 0o755)
		}},
		{name: "fifo", change: func(t *testing.T, root string) {
			must(t, syscall.Mkfifo(filepath.Join(root, "root/fifo"), 0o644))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := base(t)
			before, err := Dir(t.Context(), root, nil)
			if err != nil {
				t.Fatalf("Dir() = %v", err)
			}
			tc.change(t, root)
			after, err := Dir(t.Context(), root, nil)
			if err != nil {
				t.Fatalf("Dir() after change = %v", err)
			}
			if (before == after) != tc.same {
				t.Errorf("Dir() before %s, after %s; want same = %v", before, after, tc.same)
			}
		})
	}
}

func TestDirSameTreeElsewhere(t *testing.T) {
	a, b := base(t), base(t)
	da, err := Dir(t.Context(), a, nil)
	must(t, err)
	db, err := Dir(t.Context(), b, nil)
	must(t, err)
	if da != db {
		t.Errorf("Dir(%s) = %s, Dir(%s) = %s; want equal for identical trees", a, da, b, db)
	}
	// A symlink to the root hashes as the root.
	link := filepath.Join(t.TempDir(), "link")
	must(t, os.Symlink(a, link))
	dl, err := Dir(t.Context(), link, nil)
	must(t, err)
	if dl != da {
		t.Errorf("Dir(symlink to root) = %s, want %s", dl, da)
	}
}

func TestDirEmptyFileVsEmptyDir(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	mustWrite(t, filepath.Join(a, "x"), "", 0o755)
	must(t, os.Mkdir(filepath.Join(b, "x"), 0o755))
	da, err := Dir(t.Context(), a, nil)
	must(t, err)
	db, err := Dir(t.Context(), b, nil)
	must(t, err)
	if da == db {
		t.Errorf("empty file and empty dir hash the same: %s", da)
	}
}

func TestDirErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	mustWrite(t, file, "x", 0o644)
	tests := []struct {
		name string
		root string
		want string
	}{
		{name: "missing", root: filepath.Join(dir, "missing"), want: "no such file"},
		{name: "file", root: file, want: "not a directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Dir(t.Context(), tc.root, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.root) {
				t.Errorf("Dir(%s) = %v, want error naming the path and %q", tc.root, err, tc.want)
			}
		})
	}
}

func TestDirUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads everything")
	}
	root := base(t)
	must(t, os.Chmod(filepath.Join(root, "root/etc/motd"), 0))
	if _, err := Dir(t.Context(), root, nil); !errors.Is(err, os.ErrPermission) {
		t.Errorf("Dir() = %v, want ErrPermission", err)
	}
}

func TestDirCancelled(t *testing.T) {
	root := base(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Dir(ctx, root, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Dir(cancelled) = %v, want context.Canceled", err)
	}
	if _, err := File(ctx, filepath.Join(root, "config.xml"), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("File(cancelled) = %v, want context.Canceled", err)
	}
}

func TestFile(t *testing.T) {
	dir := t.TempDir()
	content := strings.Repeat("imsbuild", 100000) // larger than one read buffer
	p := filepath.Join(dir, "f")
	mustWrite(t, p, content, 0o644)
	must(t, os.Symlink("f", filepath.Join(dir, "link")))
	sum := sha256.Sum256([]byte(content))
	want := "sha256:" + hex.EncodeToString(sum[:])
	for _, path := range []string{p, filepath.Join(dir, "link")} {
		got, err := File(t.Context(), path, nil)
		if err != nil || got != want {
			t.Errorf("File(%s) = %s, %v; want %s", path, got, err, want)
		}
	}
	if _, err := File(t.Context(), dir, nil); err == nil {
		t.Errorf("File(dir) = nil error, want not a regular file")
	}
}

func TestTreeAgreesWithFile(t *testing.T) {
	// Hashing through the worker pool and directly must agree, so the
	// stat cache can be shared between Dir and File.
	root := base(t)
	sc := newTestStatCache(t, time.Now().Add(time.Minute))
	if _, err := Dir(t.Context(), root, sc); err != nil {
		t.Fatal(err)
	}
	n := sc.hashed.Load()
	got, err := File(t.Context(), filepath.Join(root, "root/etc/motd"), sc)
	must(t, err)
	sum := sha256.Sum256([]byte("hello"))
	if want := "sha256:" + hex.EncodeToString(sum[:]); got != want {
		t.Errorf("File() = %s, want %s", got, want)
	}
	if sc.hashed.Load() != n {
		t.Errorf("File() after Dir() rehashed the file")
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t testing.TB, p, content string, perm os.FileMode) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, []byte(content), perm))
	must(t, os.Chmod(p, perm))
}

// TestDirOwners: a chown (of a file, a symlink itself or the root) changes
// DirOwners but not Dir, also with a stat cache that holds every file's
// sum (owners are never taken from it).
func TestDirOwners(t *testing.T) {
	testutil.RequireRoot(t)
	tests := []struct {
		name string
		path string // relative to the root; "" is the root
	}{
		{name: "file", path: "root/etc/motd"},
		{name: "symlink itself", path: "root/usr/bin/alias"},
		{name: "empty dir", path: "root/empty"},
		{name: "root", path: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := base(t)
			sc := newTestStatCache(t, time.Now().Add(time.Minute)) // entries are settled
			plain, err := Dir(t.Context(), root, sc)
			must(t, err)
			before, err := DirOwners(t.Context(), root, sc)
			must(t, err)
			if before == plain {
				t.Fatalf("DirOwners() = Dir() = %s, want different encodings", plain)
			}
			must(t, os.Lchown(filepath.Join(root, tc.path), 1000, 1000))
			after, err := DirOwners(t.Context(), root, sc)
			must(t, err)
			if after == before {
				t.Errorf("DirOwners() = %s before and after chown 1000:1000 of %q, want a change", after, tc.path)
			}
			if got, err := Dir(t.Context(), root, sc); err != nil || got != plain {
				t.Errorf("Dir() after chown = %s, %v; want %s (owners are not in Dir)", got, err, plain)
			}
			must(t, os.Lchown(filepath.Join(root, tc.path), 0, 0))
			if back, err := DirOwners(t.Context(), root, sc); err != nil || back != before {
				t.Errorf("DirOwners() after chown back = %s, %v; want %s", back, err, before)
			}
		})
	}
}

// TestDirOwnersSameTreeElsewhere: two copies with the same owners hash the
// same, wherever they are.
func TestDirOwnersSameTreeElsewhere(t *testing.T) {
	a, b := base(t), base(t)
	da, err := DirOwners(t.Context(), a, nil)
	must(t, err)
	db, err := DirOwners(t.Context(), b, nil)
	must(t, err)
	if da != db {
		t.Errorf("DirOwners(%s) = %s, DirOwners(%s) = %s; want equal", a, da, b, db)
	}
}
