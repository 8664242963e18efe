package treediff

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/imsbuild/imsbuild/internal/testutil"
)

var epoch = time.Unix(1700000000, 0)

// tree makes a small image-like root with fixed mtimes.
func tree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{"etc/passwd": "root:x:0:0::/root:/bin/sh\n", "etc/motd": "hello\n", "bin/sh": "#!sh\n"}
	for _, d := range []string{"etc", "bin", "var/log"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, c := range files {
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("sh", filepath.Join(root, "bin/ash")); err != nil {
		t.Fatal(err)
	}
	stamp(t, root)
	return root
}

// stamp sets every mtime below root to epoch (after the tree is made, as
// a pack clamps them).
func stamp(t *testing.T, root string) {
	t.Helper()
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		ts := []unix.Timespec{unix.NsecToTimespec(epoch.UnixNano()), unix.NsecToTimespec(epoch.UnixNano())}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDirs(t *testing.T) {
	ts := epoch.UTC().Format(time.RFC3339Nano)
	tests := []struct {
		name   string
		root   bool // needs root (chown)
		change func(t *testing.T, root string)
		want   []Change
	}{
		{name: "identical", change: func(*testing.T, string) {}},
		{name: "content same size", change: func(t *testing.T, r string) { write(t, filepath.Join(r, "etc/motd"), "HELLO\n"); stamp(t, r) },
			want: []Change{{Path: "/etc/motd", What: Content}}},
		{name: "content and size", change: func(t *testing.T, r string) { write(t, filepath.Join(r, "etc/motd"), "hello, world\n"); stamp(t, r) },
			want: []Change{{Path: "/etc/motd", What: Content, Old: "6 bytes", New: "13 bytes"}}},
		{name: "mode", change: func(t *testing.T, r string) { os.Chmod(filepath.Join(r, "etc/passwd"), 0o600) },
			want: []Change{{Path: "/etc/passwd", What: Mode, Old: "0644", New: "0600"}}},
		{name: "root mode", change: func(t *testing.T, r string) { os.Chmod(r, 0o700) },
			want: []Change{{Path: "/", What: Mode, Old: "0755", New: "0700"}}},
		{name: "setuid", change: func(t *testing.T, r string) { os.Chmod(filepath.Join(r, "bin/sh"), 0o644|os.ModeSetuid) },
			want: []Change{{Path: "/bin/sh", What: Mode, Old: "0644", New: "4644"}}},
		{name: "mtime", change: func(t *testing.T, r string) {
			os.Chtimes(filepath.Join(r, "etc/motd"), epoch, epoch.Add(90*time.Second+5))
		}, want: []Change{{Path: "/etc/motd", What: Mtime, Old: ts, New: epoch.Add(90*time.Second + 5).UTC().Format(time.RFC3339Nano)}}},
		{name: "symlink target", change: func(t *testing.T, r string) {
			os.Remove(filepath.Join(r, "bin/ash"))
			os.Symlink("/bin/busybox", filepath.Join(r, "bin/ash"))
			stamp(t, r)
		}, want: []Change{{Path: "/bin/ash", What: Symlink, Old: "sh", New: "/bin/busybox"}}},
		{name: "type", change: func(t *testing.T, r string) {
			os.Remove(filepath.Join(r, "etc/motd"))
			os.Mkdir(filepath.Join(r, "etc/motd"), 0o755)
			stamp(t, r)
		}, want: []Change{{Path: "/etc/motd", What: Type, Old: "file", New: "directory"}}},
		{name: "missing and extra", change: func(t *testing.T, r string) {
			os.RemoveAll(filepath.Join(r, "var")) // a whole directory is one change
			write(t, filepath.Join(r, "etc/new"), "x")
			stamp(t, r)
		}, want: []Change{{Path: "/etc/new", What: Extra}, {Path: "/var", What: Missing}}},
		{name: "xattr", change: func(t *testing.T, r string) {
			if err := unix.Lsetxattr(filepath.Join(r, "bin/sh"), "user.imsbuild", []byte("v1"), 0); err != nil {
				t.Fatalf("setxattr (the test tree's filesystem must support user xattrs): %v", err)
			}
		}, want: []Change{{Path: "/bin/sh", What: Xattr, New: `user.imsbuild="v1"`}}},
		{name: "long xattr value", change: func(t *testing.T, r string) {
			// Longer than the first read buffer: the value is read again at its size.
			if err := unix.Lsetxattr(filepath.Join(r, "bin/sh"), "user.long", []byte(strings.Repeat("b", 1000)), 0); err != nil {
				t.Fatal(err)
			}
		}, want: []Change{{Path: "/bin/sh", What: Xattr, New: `user.long="` + strings.Repeat("b", 1000) + `"`}}},
		{name: "binary xattr value", change: func(t *testing.T, r string) {
			if err := unix.Lsetxattr(filepath.Join(r, "bin/sh"), "user.bin", []byte{1, 0, 2}, 0); err != nil {
				t.Fatal(err)
			}
		}, want: []Change{{Path: "/bin/sh", What: Xattr, New: `user.bin=(3 bytes)`}}},
		{name: "owner", root: true, change: func(t *testing.T, r string) {
			if err := os.Lchown(filepath.Join(r, "etc/passwd"), 1000, 100); err != nil {
				t.Fatal(err)
			}
		}, want: []Change{{Path: "/etc/passwd", What: Owner, Old: fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid()), New: "1000:100"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root {
				testutil.RequireRoot(t)
			}
			a, b := tree(t), tree(t)
			tc.change(t, b)
			got, err := Dirs(t.Context(), a, b, 0)
			if err != nil {
				t.Fatal(err)
			}
			want := &Report{Changes: tc.want, Total: len(tc.want)}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Dirs() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDirsBounded: the report keeps the first max changes in path order
// and counts them all.
func TestDirsBounded(t *testing.T) {
	a, b := tree(t), tree(t)
	for i := range 30 {
		write(t, filepath.Join(a, "var/log", fmt.Sprintf("%02d.log", i)), "a")
		write(t, filepath.Join(b, "var/log", fmt.Sprintf("%02d.log", i)), "b")
	}
	stamp(t, a)
	stamp(t, b)
	got, err := Dirs(t.Context(), a, b, 5)
	if err != nil {
		t.Fatal(err)
	}
	if got.Total != 30 || len(got.Changes) != 5 || got.Changes[0].Path != "/var/log/00.log" || got.Changes[4].Path != "/var/log/04.log" {
		t.Fatalf("Dirs(max 5) = %+v, want the first 5 of 30 content changes in path order", got)
	}
}

func TestChangeString(t *testing.T) {
	for _, tc := range []struct {
		c    Change
		want string
	}{
		{Change{Path: "/a", What: Content}, "/a: content differs"},
		{Change{Path: "/a", What: Content, Old: "1 bytes", New: "2 bytes"}, "/a: content differs (1 bytes → 2 bytes)"},
		{Change{Path: "/a", What: Mode, Old: "0644", New: "0600"}, "/a: mode 0644 → 0600"},
		{Change{Path: "/a", What: Missing}, "/a: missing"},
		{Change{Path: "/a", What: Xattr, New: `user.x="1"`}, `/a: xattr (none) → user.x="1"`},
	} {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.c, got, tc.want)
		}
	}
}

// TestSquashfs packs two trees with the real mksquashfs and compares them
// through the real unsquashfs.
func TestSquashfs(t *testing.T) {
	mk := testutil.RequireTool(t, "mksquashfs")
	testutil.RequireTool(t, "unsquashfs")
	a, b := tree(t), tree(t)
	write(t, filepath.Join(b, "etc/motd"), "HELLO\n")
	os.Chmod(filepath.Join(b, "etc/passwd"), 0o600)
	stamp(t, b)
	dir := t.TempDir()
	for name, root := range map[string]string{"a.sqfs": a, "b.sqfs": b, "a2.sqfs": a} {
		if out, err := exec.Command(mk, root, filepath.Join(dir, name), "-noappend", "-no-progress", "-all-root").CombinedOutput(); err != nil {
			t.Fatalf("mksquashfs: %v\n%s", err, out)
		}
	}
	got, err := Squashfs(t.Context(), filepath.Join(dir, "a.sqfs"), filepath.Join(dir, "b.sqfs"), dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := &Report{Total: 2, Changes: []Change{{Path: "/etc/motd", What: Content}, {Path: "/etc/passwd", What: Mode, Old: "0644", New: "0600"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Squashfs() mismatch (-want +got):\n%s", diff)
	}
	if got, err := Squashfs(t.Context(), filepath.Join(dir, "a.sqfs"), filepath.Join(dir, "a2.sqfs"), dir, 0); err != nil || got.Total != 0 {
		t.Errorf("Squashfs(same tree) = %+v, %v; want no changes", got, err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "treediff-*")); len(left) != 0 {
		t.Errorf("scratch trees left behind: %v", left)
	}
}
