package sshenv

import (
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/pkg/sftp"
)

// sftpClient serves root at mount over an in-memory pipe and returns a
// client of it.
func sftpClient(t *testing.T, root, mount string) *sftp.Client {
	t.Helper()
	rfs, err := openRootFS(root, mount)
	if err != nil {
		t.Fatal(err)
	}
	sc, cc := net.Pipe()
	rs := sftp.NewRequestServer(sc, newSFTPHandlers(rfs), sftp.WithStartDirectory(mount))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = rs.Serve()
	}()
	c, err := sftp.NewClientPipe(cc, cc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		rs.Close()
		<-done
		rfs.Close()
	})
	return c
}

// escapeRoot makes an image root next to a secret file, with symlinks that
// point out of the root when followed on the host.
func escapeRoot(t *testing.T) (root, secret string) {
	t.Helper()
	base := t.TempDir()
	root = filepath.Join(base, "root")
	secret = filepath.Join(base, "secret")
	for _, d := range []string{"etc", "sub"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{secret: "host secret\n", filepath.Join(root, "etc/passwd"): "image passwd\n", filepath.Join(root, "secret"): "image secret\n"}
	for p, c := range files {
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"abs":         "/etc",              // the image's /etc, not the host's
		"up":          "../..",             // ".." stops at the root
		"sub/updir":   "../../../..",       // likewise
		"hostsecret":  secret,              // an absolute host path: not in the image
		"upsecret":    "../secret",         // the root's parent's file: the image's
		"sub/hostetc": "/../../../../etc/", // still the image's /etc
	}
	for l, target := range links {
		if err := os.Symlink(target, filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	return root, secret
}

func TestSFTPStaysInRoot(t *testing.T) {
	root, secret := escapeRoot(t)
	for _, mount := range []string{"/", "/mnt/image"} {
		t.Run(mount, func(t *testing.T) {
			c := sftpClient(t, root, mount)
			in := func(p string) string { return strings.TrimSuffix(mount, "/") + p }
			// Outside the mount point of a non-jailed environment nothing is
			// served: ".." above it is refused there, and stays in the root
			// at "/".
			above := func(want string) string {
				if mount == "/" {
					return want
				}
				return ""
			}
			reads := []struct {
				path, want string
			}{
				{in("/etc/passwd"), "image passwd\n"},
				{in("/../../etc/passwd"), above("image passwd\n")},
				{in("/abs/passwd"), "image passwd\n"},
				{in("/up/etc/passwd"), "image passwd\n"},
				{in("/sub/updir/etc/passwd"), "image passwd\n"},
				{in("/sub/hostetc/passwd"), "image passwd\n"},
				{in("/upsecret"), "image secret\n"},
				{in("/../secret"), above("image secret\n")},
				{in("/hostsecret"), ""}, // missing inside the image
			}
			for _, r := range reads {
				f, err := c.Open(r.path)
				if r.want == "" {
					if err == nil {
						b, _ := io.ReadAll(f)
						f.Close()
						t.Errorf("Open(%s) = %q, want an error", r.path, b)
					}
					continue
				}
				if err != nil {
					t.Errorf("Open(%s) = %v", r.path, err)
					continue
				}
				b, err := io.ReadAll(f)
				f.Close()
				if string(b) != r.want || err != nil {
					t.Errorf("read %s = (%q, %v), want %q", r.path, b, err, r.want)
				}
			}
			// Writes through escaping links land in the image.
			for _, p := range []string{in("/up/written"), in("/abs/written")} {
				f, err := c.Create(p)
				if err != nil {
					t.Fatalf("Create(%s) = %v", p, err)
				}
				if _, err := f.Write([]byte("x")); err != nil {
					t.Fatal(err)
				}
				f.Close()
			}
			for _, p := range []string{"written", "etc/written"} {
				if _, err := os.Stat(filepath.Join(root, p)); err != nil {
					t.Errorf("%s not written in the root: %v", p, err)
				}
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(root), "written")); err == nil {
				t.Errorf("a write escaped the root")
			}
			if b, _ := os.ReadFile(secret); string(b) != "host secret\n" {
				t.Errorf("host secret changed: %q", b)
			}
			for _, p := range []string{"written", "etc/written"} {
				if err := c.Remove(in("/" + p)); err != nil {
					t.Errorf("Remove(%s) = %v", p, err)
				}
			}
			if mount != "/" {
				if _, err := c.Stat("/etc/passwd"); !errors.Is(err, fs.ErrPermission) {
					t.Errorf("Stat(/etc/passwd) outside the mount = %v, want permission denied", err)
				}
			}
		})
	}
}

func TestSFTPOperations(t *testing.T) {
	root, _ := escapeRoot(t)
	c := sftpClient(t, root, "/")
	if err := c.MkdirAll("/a/b"); err != nil {
		t.Fatalf("MkdirAll() = %v", err)
	}
	f, err := c.OpenFile("/a/b/f", os.O_RDWR|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		t.Fatalf("OpenFile() = %v", err)
	}
	if _, err := f.Write([]byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	steps := []struct {
		name string
		do   func() error
	}{
		{"chmod", func() error { return c.Chmod("/a/b/f", 0o600) }},
		{"truncate", func() error { return c.Truncate("/a/b/f", 4) }},
		{"symlink", func() error { return c.Symlink("/a/b/f", "/a/link") }},
		{"rename", func() error { return c.Rename("/a/b/f", "/a/g") }},
		{"posix rename", func() error { return c.PosixRename("/a/g", "/a/h") }},
		{"link", func() error { return c.Link("/a/h", "/a/hard") }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
	}
	fi, err := os.Stat(filepath.Join(root, "a/h"))
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != 4 {
		t.Errorf("a/h = %v, %v; want mode 0600 size 4", fi, err)
	}
	if target, err := c.ReadLink("/a/link"); target != "/a/b/f" || err != nil {
		t.Errorf("ReadLink() = %q, %v", target, err)
	}
	if fi, err := c.Lstat("/a/link"); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("Lstat(/a/link) = %v, %v; want a symlink", fi, err)
	}
	entries, err := c.ReadDir("/a")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if got := strings.Join(names, " "); got != "b h hard link" {
		t.Errorf("ReadDir(/a) = %s", got)
	}
	if err := c.RemoveDirectory("/a"); err == nil {
		t.Error("RemoveDirectory() of a non-empty directory succeeded")
	}
	if err := c.RemoveDirectory("/a/b"); err != nil {
		t.Errorf("RemoveDirectory() = %v", err)
	}
	if err := c.RemoveDirectory("/"); err == nil {
		t.Error("RemoveDirectory(/) succeeded")
	}
	if _, err := c.StatVFS("/"); err != nil {
		t.Errorf("StatVFS() = %v", err)
	}
}
