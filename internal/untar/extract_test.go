package untar

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ent is one tar entry of a test archive.
type ent struct {
	hdr  tar.Header
	body string
}

func file(name, body string, mode int64) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body)), ModTime: mtime}, body: body}
}

func dir(name string, mode int64) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: mtime}}
}

func symlink(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: mtime}}
}

func hardlink(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, ModTime: mtime}}
}

var mtime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

func archive(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := e.hdr
		if h.Format == tar.FormatUnknown && len(h.PAXRecords) > 0 {
			h.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sandbox returns dst and a sibling dir that must stay empty.
func sandbox(t testing.TB) (dst, sibling string) {
	t.Helper()
	parent := t.TempDir()
	dst = filepath.Join(parent, "dst")
	sibling = filepath.Join(parent, "outside")
	if err := os.Mkdir(sibling, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst, sibling
}

func requireEmpty(t testing.TB, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Errorf("%s has %d entries, want none (something escaped)", dir, len(ents))
	}
	parentEnts, err := os.ReadDir(filepath.Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range parentEnts {
		if e.Name() != "dst" && e.Name() != "outside" {
			t.Errorf("unexpected %s next to dst", e.Name())
		}
	}
}

func TestExtract(t *testing.T) {
	xattrHdr := file("x/attr", "a", 0o644)
	xattrHdr.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.imsbuild": "yes"}
	data := archive(t,
		dir("./", 0o755),
		dir("etc/", 0o755),
		file("etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644),
		file("usr/bin/su", "setuid", 0o4755),
		symlink("etc/abs", "/etc/shadow"),
		symlink("etc/rel", "../usr/bin/su"),
		hardlink("usr/bin/su2", "usr/bin/su"),
		dir("ro/", 0o555),
		file("ro/inside", "in a read-only dir", 0o600),
		xattrHdr,
		ent{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o600, ModTime: mtime}},
	)
	dst, sibling := sandbox(t)
	var log bytes.Buffer
	t.Cleanup(func() { os.Chmod(filepath.Join(dst, "ro"), 0o755) }) // removable as non-root
	if err := Extract(t.Context(), bytes.NewReader(data), dst, Options{Log: &log}); err != nil {
		t.Fatalf("Extract() = %v", err)
	}
	requireEmpty(t, sibling)

	tests := []struct {
		name   string
		mode   os.FileMode
		body   string
		target string
	}{
		{name: "etc", mode: os.ModeDir | 0o755},
		{name: "etc/passwd", mode: 0o644, body: "root:x:0:0::/root:/bin/sh\n"},
		{name: "usr/bin/su", mode: os.ModeSetuid | 0o755, body: "setuid"},
		{name: "usr/bin/su2", mode: os.ModeSetuid | 0o755, body: "setuid"},
		{name: "etc/abs", mode: os.ModeSymlink, target: "/etc/shadow"},
		{name: "etc/rel", mode: os.ModeSymlink, target: "../usr/bin/su"},
		{name: "ro", mode: os.ModeDir | 0o555},
		{name: "ro/inside", mode: 0o600, body: "in a read-only dir"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dst, tc.name)
			fi, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			if tc.mode&os.ModeSymlink != 0 {
				if fi.Mode()&os.ModeSymlink == 0 {
					t.Fatalf("mode = %v, want a symlink", fi.Mode())
				}
				got, _ := os.Readlink(p)
				if got != tc.target {
					t.Errorf("Readlink() = %q, want %q", got, tc.target)
				}
			} else if fi.Mode() != tc.mode {
				t.Errorf("mode = %v, want %v", fi.Mode(), tc.mode)
			}
			if !fi.ModTime().Equal(mtime) {
				t.Errorf("mtime = %v, want %v", fi.ModTime(), mtime)
			}
			if tc.body != "" {
				got, err := os.ReadFile(p)
				if err != nil || string(got) != tc.body {
					t.Errorf("content = %q, %v; want %q", got, err, tc.body)
				}
			}
		})
	}
	var a, b unix.Stat_t
	if err := unix.Stat(filepath.Join(dst, "usr/bin/su"), &a); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(filepath.Join(dst, "usr/bin/su2"), &b); err != nil {
		t.Fatal(err)
	}
	if a.Ino != b.Ino {
		t.Errorf("hardlink su2 has inode %d, want %d", b.Ino, a.Ino)
	}
	if _, err := os.Lstat(filepath.Join(dst, "run/fifo")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("fifo without AllowDevices: Lstat() = %v, want not exist", err)
	}
	if !strings.Contains(log.String(), "skip fifo run/fifo") {
		t.Errorf("log = %q, want a note about the skipped fifo", log.String())
	}
	buf := make([]byte, 16)
	n, err := unix.Lgetxattr(filepath.Join(dst, "x/attr"), "user.imsbuild", buf)
	switch {
	case errors.Is(err, unix.ENOTSUP):
		t.Log("filesystem without user xattrs")
	case err != nil || string(buf[:n]) != "yes":
		t.Errorf("xattr user.imsbuild = %q, %v; want yes", buf[:n], err)
	}
}

func TestExtractOwnersAndDevices(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	f := file("owned", "x", 0o640)
	f.hdr.Uid, f.hdr.Gid = 1234, 5678
	l := symlink("link", "owned")
	l.hdr.Uid, l.hdr.Gid = 42, 43
	data := archive(t, f, l,
		ent{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "fifo", Mode: 0o620, ModTime: mtime}},
		ent{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: mtime}},
	)
	dst, _ := sandbox(t)
	if err := Extract(t.Context(), bytes.NewReader(data), dst, Options{AllowDevices: true}); err != nil {
		t.Fatalf("Extract() = %v", err)
	}
	tests := []struct {
		name     string
		uid, gid uint32
		typ      uint32
		perm     uint32
	}{
		{"owned", 1234, 5678, unix.S_IFREG, 0o640},
		{"link", 42, 43, unix.S_IFLNK, 0o777},
		{"fifo", 0, 0, unix.S_IFIFO, 0o620},
		{"null", 0, 0, unix.S_IFCHR, 0o666},
	}
	for _, tc := range tests {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dst, tc.name), &st); err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if st.Uid != tc.uid || st.Gid != tc.gid || st.Mode&unix.S_IFMT != tc.typ || (tc.typ != unix.S_IFLNK && st.Mode&0o7777 != tc.perm) {
			t.Errorf("%s: uid %d gid %d mode %o, want %d %d %o", tc.name, st.Uid, st.Gid, st.Mode, tc.uid, tc.gid, tc.typ|tc.perm)
		}
	}
}

func TestExtractUnsafe(t *testing.T) {
	tests := []struct {
		name  string
		ents  []ent
		entry string // named in the error
	}{
		{"dotdot", []ent{file("../evil", "x", 0o644)}, "../evil"},
		{"dotdot inside", []ent{file("a/../../evil", "x", 0o644)}, "a/../../evil"},
		{"absolute", []ent{file("/tmp/evil", "x", 0o644)}, "/tmp/evil"},
		{"through symlink to sibling", []ent{symlink("link", "../outside"), file("link/evil", "x", 0o644)}, "link/evil"},
		{"through absolute symlink", []ent{symlink("link", "/"), file("link/tmp/evil", "x", 0o644)}, "link/tmp/evil"},
		{"dir through symlink", []ent{symlink("link", "../outside"), dir("link/sub/", 0o755)}, "link/sub/"},
		{"through symlinked parent chain", []ent{dir("a/", 0o755), symlink("a/b", "../../outside"), file("a/b/c/evil", "x", 0o644)}, "a/b/c/evil"},
		{"hardlink escaping", []ent{hardlink("h", "../outside/x")}, "h"},
		{"hardlink absolute", []ent{hardlink("h", "/etc/passwd")}, "h"},
		{"hardlink not yet extracted", []ent{hardlink("h", "later"), file("later", "x", 0o644)}, "h"},
		{"hardlink through symlink", []ent{symlink("link", "../outside"), file("f", "x", 0o644), hardlink("link/h", "f")}, "link/h"},
		{"symlink as root", []ent{symlink("./", "/")}, "./"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst, sibling := sandbox(t)
			err := Extract(t.Context(), bytes.NewReader(archive(t, tc.ents...)), dst, Options{})
			if !errors.Is(err, ErrUnsafe) {
				t.Fatalf("Extract() = %v, want ErrUnsafe", err)
			}
			if !strings.Contains(err.Error(), tc.entry) {
				t.Errorf("Extract() = %v, want the entry %q named", err, tc.entry)
			}
			requireEmpty(t, sibling)
		})
	}
}

func TestExtractReplaces(t *testing.T) {
	dst, sibling := sandbox(t)
	// A symlink later replaced by a file: the file is written in place of
	// the link, never through it.
	data := archive(t, symlink("f", "../outside/f"), file("f", "new", 0o644))
	if err := Extract(t.Context(), bytes.NewReader(data), dst, Options{}); err != nil {
		t.Fatalf("Extract() = %v", err)
	}
	requireEmpty(t, sibling)
	fi, err := os.Lstat(filepath.Join(dst, "f"))
	if err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("f: %v %v, want a regular file", fi, err)
	}
}

func TestExtractCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	dst, _ := sandbox(t)
	err := Extract(ctx, bytes.NewReader(archive(t, file("a", "b", 0o644))), dst, Options{})
	if err == nil {
		t.Fatal("Extract() with a cancelled context = nil, want an error")
	}
}
