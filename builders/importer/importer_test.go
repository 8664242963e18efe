package importer

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/internal/untar"
)

// root makes a busybox root with a setuid file, a hardlink, an absolute
// symlink and, as root, a file owned by someone else.
func root(t *testing.T) string {
	t.Helper()
	r := testutil.BusyboxRoot(t, true)
	su := filepath.Join(r, "usr/bin/su")
	if err := os.WriteFile(su, []byte("setuid tool"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(su, 0o4755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/os-release", filepath.Join(r, "etc/abs-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(r, "etc/passwd"), filepath.Join(r, "etc/passwd.hard")); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(filepath.Join(r, "etc/group"), 1234, 5678); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// sameTree compares types, permissions, symlink targets, contents, file
// mtimes (seconds) and, as root, owners of every entry of want with got.
func sameTree(t *testing.T, want, got string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		var ws, gs unix.Stat_t
		if err := unix.Lstat(p, &ws); err != nil {
			return err
		}
		if err := unix.Lstat(filepath.Join(got, rel), &gs); err != nil {
			t.Errorf("%s: %v", rel, err)
			return nil
		}
		n++
		if ws.Mode != gs.Mode {
			t.Errorf("%s: mode %o, want %o", rel, gs.Mode, ws.Mode)
		}
		if os.Geteuid() == 0 && (ws.Uid != gs.Uid || ws.Gid != gs.Gid) {
			t.Errorf("%s: owner %d:%d, want %d:%d", rel, gs.Uid, gs.Gid, ws.Uid, ws.Gid)
		}
		switch ws.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			wl, _ := os.Readlink(p)
			gl, _ := os.Readlink(filepath.Join(got, rel))
			if wl != gl {
				t.Errorf("%s: link %q, want %q", rel, gl, wl)
			}
		case unix.S_IFREG:
			if ws.Mtim.Sec != gs.Mtim.Sec {
				t.Errorf("%s: mtime %d, want %d", rel, gs.Mtim.Sec, ws.Mtim.Sec)
			}
			if testutil.FileSHA256(t, p) != testutil.FileSHA256(t, filepath.Join(got, rel)) {
				t.Errorf("%s: content differs", rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Fatalf("compared %d entries, want a real tree", n)
	}
}

func tarOf(t *testing.T, r string) string {
	t.Helper()
	testutil.RequireTool(t, "tar")
	out := filepath.Join(t.TempDir(), "root.tar")
	if b, err := exec.CommandContext(t.Context(), "tar", "--xattrs", "-C", r, "-cf", out, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, b)
	}
	return out
}

func compressed(t *testing.T, plain, ext string, wrap func(io.Writer) (io.WriteCloser, error)) string {
	t.Helper()
	in, err := os.Open(plain)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out := plain + ext
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := wrap(f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(w, in); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestImport(t *testing.T) {
	src := root(t)
	tests := []struct {
		name string
		kind Kind
		make func(t *testing.T) string
	}{
		{"dir", KindDir, func(t *testing.T) string { return src }},
		{"dir with trailing slash", KindDir, func(t *testing.T) string { return src + "/" }},
		{"tar", KindTar, func(t *testing.T) string { return tarOf(t, src) }},
		{"tar.gz", KindTar, func(t *testing.T) string {
			return compressed(t, tarOf(t, src), ".gz", func(w io.Writer) (io.WriteCloser, error) { return gzip.NewWriter(w), nil })
		}},
		{"tar.zst", KindTar, func(t *testing.T) string {
			return compressed(t, tarOf(t, src), ".zst", func(w io.Writer) (io.WriteCloser, error) { return zstd.NewWriter(w) })
		}},
		{"squashfs", KindSquashfs, func(t *testing.T) string {
			testutil.RequireTool(t, "mksquashfs")
			out := filepath.Join(t.TempDir(), "root.squashfs")
			if b, err := exec.CommandContext(t.Context(), "mksquashfs", src, out, "-noappend", "-quiet", "-no-progress", "-comp", "zstd").CombinedOutput(); err != nil {
				t.Fatalf("mksquashfs: %v: %s", err, b)
			}
			return out
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.kind == KindSquashfs {
				testutil.RequireTool(t, "unsquashfs")
			}
			if tc.kind == KindDir {
				testutil.RequireTool(t, "cp")
			}
			in := tc.make(t)
			kind, err := Detect(in)
			if err != nil || kind != tc.kind {
				t.Fatalf("Detect() = %q, %v; want %q", kind, err, tc.kind)
			}
			dst := filepath.Join(t.TempDir(), "root")
			if err := Import(t.Context(), in, dst); err != nil {
				t.Fatalf("Import() = %v", err)
			}
			sameTree(t, src, dst)
		})
	}
}

func TestImportErrors(t *testing.T) {
	tmp := t.TempDir()
	junk := filepath.Join(tmp, "junk")
	if err := os.WriteFile(junk, []byte("neither tar nor squashfs"), 0o644); err != nil {
		t.Fatal(err)
	}
	badSquash := filepath.Join(tmp, "bad.squashfs")
	if err := os.WriteFile(badSquash, append([]byte("hsqs"), make([]byte, 1000)...), 0o644); err != nil {
		t.Fatal(err)
	}
	full := filepath.Join(tmp, "full")
	if err := os.MkdirAll(filepath.Join(full, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, src, dst string
		is             error
		contains       string
	}{
		{"missing", filepath.Join(tmp, "nope"), filepath.Join(tmp, "d1"), fs.ErrNotExist, "nope"},
		{"unknown format", junk, filepath.Join(tmp, "d2"), ErrUnknownSource, "junk"},
		{"corrupt squashfs", badSquash, filepath.Join(tmp, "d3"), nil, "unsquashfs"},
		{"destination not empty", junk, full, nil, "not empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "corrupt squashfs" {
				testutil.RequireTool(t, "unsquashfs")
			}
			if tc.name == "destination not empty" {
				tc.src = tmp // a dir: detection passes, emptiness fails
			}
			err := Import(t.Context(), tc.src, tc.dst)
			if err == nil {
				t.Fatal("Import() = nil, want an error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("Import() = %v, want errors.Is %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("Import() = %v, want it to mention %q", err, tc.contains)
			}
			t.Log(err)
		})
	}
}

func TestImportTarSlip(t *testing.T) {
	tests := []struct {
		name string
		hdrs []tar.Header
	}{
		{"dotdot", []tar.Header{{Typeflag: tar.TypeReg, Name: "../outside/evil", Mode: 0o644}}},
		{"absolute", []tar.Header{{Typeflag: tar.TypeReg, Name: "/evil", Mode: 0o644}}},
		{"symlink parent", []tar.Header{
			{Typeflag: tar.TypeSymlink, Name: "etc", Linkname: "../outside"},
			{Typeflag: tar.TypeReg, Name: "etc/evil", Mode: 0o644},
		}},
		{"hardlink out", []tar.Header{{Typeflag: tar.TypeLink, Name: "h", Linkname: "../outside/secret"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			outside := filepath.Join(parent, "outside")
			if err := os.Mkdir(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for _, h := range tc.hdrs {
				if err := tw.WriteHeader(&h); err != nil {
					t.Fatal(err)
				}
			}
			tw.Close()
			src := filepath.Join(parent, "slip.tar")
			if err := os.WriteFile(src, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			err := Import(t.Context(), src, filepath.Join(parent, "dst"))
			if !errors.Is(err, untar.ErrUnsafe) {
				t.Fatalf("Import() = %v, want untar.ErrUnsafe", err)
			}
			ents, _ := os.ReadDir(outside)
			if len(ents) != 1 {
				t.Errorf("outside has %d entries, want only secret", len(ents))
			}
			top, _ := os.ReadDir(parent)
			if len(top) != 3 {
				t.Errorf("%s has %d entries, want outside, slip.tar, dst", parent, len(top))
			}
		})
	}
}

func TestSourceDigest(t *testing.T) {
	testutil.RequireTool(t, "cp")
	src := root(t)
	d1, err := SourceDigest(t.Context(), src, nil)
	if err != nil {
		t.Fatalf("SourceDigest(dir) = %v", err)
	}
	if !strings.HasPrefix(d1, "sha256:") {
		t.Errorf("SourceDigest(dir) = %q, want sha256:…", d1)
	}
	cp := filepath.Join(t.TempDir(), "copy")
	if err := Import(t.Context(), src, cp); err != nil {
		t.Fatal(err)
	}
	if d2, err := SourceDigest(t.Context(), cp, nil); err != nil || d2 != d1 {
		t.Errorf("SourceDigest(copy) = %q, %v; want %q (same content)", d2, err, d1)
	}
	if err := os.WriteFile(filepath.Join(cp, "etc/motd"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	if d3, err := SourceDigest(t.Context(), cp, nil); err != nil || d3 == d1 {
		t.Errorf("SourceDigest(changed copy) = %q, %v; want a different digest", d3, err)
	}
	archive := tarOf(t, src)
	fd, err := SourceDigest(t.Context(), archive, nil)
	if want := "sha256:" + testutil.FileSHA256(t, archive); err != nil || fd != want {
		t.Errorf("SourceDigest(tar) = %q, %v; want %q", fd, err, want)
	}
}

// TestSourceDigestOwners: an import by root keeps a source file's owner, so
// a chown of it changes the digest, and the import's copy (owners and all)
// has the source's digest; an import that keeps no owners ignores them.
func TestSourceDigestOwners(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "cp")
	src := root(t)
	before, err := SourceDigest(t.Context(), src, nil)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := sourceDigest(t.Context(), src, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	osRelease := filepath.Join(src, "etc/os-release")
	if err := os.Chown(osRelease, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	after, err := SourceDigest(t.Context(), src, nil)
	if err != nil || after == before {
		t.Errorf("SourceDigest() after chown 1000:1000 = %q, %v; want other than %q", after, err, before)
	}
	if d, err := sourceDigest(t.Context(), src, nil, false); err != nil || d != plain {
		t.Errorf("sourceDigest(keeps no owners) after chown = %q, %v; want %q", d, err, plain)
	}
	dst := filepath.Join(t.TempDir(), "root")
	if err := Import(t.Context(), src, dst); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(filepath.Join(dst, "etc/os-release"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1000 || st.Gid != 1000 {
		t.Errorf("imported etc/os-release owner = %d:%d, want 1000:1000", st.Uid, st.Gid)
	}
	if d, err := SourceDigest(t.Context(), dst, nil); err != nil || d != after {
		t.Errorf("SourceDigest(imported copy) = %q, %v; want the source's %q", d, err, after)
	}
}

// The image root and the directories an archive implies without listing
// them are 0755 whatever the builder's umask: images must not depend on it.
func TestImportIgnoresUmask(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []tar.Header{
		{Typeflag: tar.TypeReg, Name: "etc/hostname", Mode: 0o644},
		{Typeflag: tar.TypeDir, Name: "var/", Mode: 0o700},
	} {
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	src := filepath.Join(t.TempDir(), "root.tar")
	if err := os.WriteFile(src, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "dst")
	old := unix.Umask(0o027)
	err := Import(t.Context(), src, dst)
	unix.Umask(old)
	if err != nil {
		t.Fatalf("Import() = %v", err)
	}
	for path, want := range map[string]fs.FileMode{"": 0o755, "etc": 0o755, "var": 0o700, "etc/hostname": 0o644} {
		fi, err := os.Lstat(filepath.Join(dst, path))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("mode of /%s = %v, want %v", path, got, want)
		}
	}
}
