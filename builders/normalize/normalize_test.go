package normalize

import (
	"bytes"
	"encoding/binary"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/imsbuild/imsbuild/internal/testutil"
)

const epoch = 1700000000 // day 19675

// pyc returns a .pyc header (Python 3.11's magic) with flags and mtime,
// and some code after it.
func pyc(flags, mtime uint32) string {
	var h [16]byte
	binary.LittleEndian.PutUint16(h[:2], 3495)
	h[2], h[3] = '\r', '\n'
	binary.LittleEndian.PutUint32(h[4:], flags)
	binary.LittleEndian.PutUint32(h[8:], mtime)
	binary.LittleEndian.PutUint32(h[12:], 42)
	return string(h[:]) + "code"
}

// syntheticRoot is an image root with every kind of drift Root handles,
// and files it must keep.
func syntheticRoot(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	old := syscall.Umask(0o077) // the builder's umask leaks into / and /dev
	defer syscall.Umask(old)
	files := map[string]string{
		"var/log/dpkg.log":                                "2026-12-03 15:00:00 install x\n",
		"var/log/alternatives.log":                        "update-alternatives 2026-12-03\n",
		"var/log/bootstrap.log":                           "bootstrap\n",
		"var/log/apt/history.log":                         "Start-Date: 2026-12-03\n",
		"var/log/apt/term.log":                            "Log started: 2026-12-03\n",
		"var/log/apt/eipp.log.xz":                         "\xfd7zXZ",
		"var/log/zypp/history":                            "2026-12-03|install|x\n",
		"var/log/journal/keep.journal":                    "a journal is not a text log", // not *.log: kept
		"var/log/README":                                  "kept",
		"var/cache/apt/pkgcache.bin":                      "cache",
		"var/cache/apt/srcpkgcache.bin":                   "cache",
		"var/cache/apt/archives/x_1.0_amd64.deb":          "deb",
		"var/cache/apt/archives/partial/y.deb":            "part",
		"var/cache/apt/archives/lock":                     "",
		"var/cache/zypp/packages/repo/x.rpm":              "rpm",
		"var/cache/dnf/repo-1234/repodata/repomd.xml":     "xml",
		"var/lib/dpkg/status":                             "Package: x\n",
		"var/lib/dpkg/status-old":                         "Package: x\n",
		"var/lib/dpkg/diversions-old":                     "",
		"var/cache/ldconfig/aux-cache":                    "aux",
		"etc/ld.so.cache":                                 "kept: ldconfig's real cache",
		"etc/machine-id":                                  "0123456789abcdef0123456789abcdef\n",
		"var/lib/dbus/machine-id":                         "0123456789abcdef0123456789abcdef\n",
		"var/lib/systemd/random-seed":                     "seed",
		"var/lib/urandom/random-seed":                     "seed",
		"etc/shadow":                                      "root:*:20425:0:99999:7:::\nold:*:19000:0:99999:7:::\nnew:!:20425::::::\nforced:x:0:0:99999:7:::\nnone:*::0:99999:7:::\n",
		"etc/shadow-":                                     "root:*:20424:0:99999:7:::\n",
		"usr/lib/python3/x/__pycache__/a.cpython-311.pyc": pyc(0, 1764770000), // stale
		"usr/lib/python3/x/__pycache__/b.cpython-311.pyc": pyc(0, epoch),      // matches the packed mtime
		"usr/lib/python3/x/__pycache__/c.cpython-311.pyc": pyc(3, 1764770000), // hash-based
		"usr/lib/python3/x/d.pyc":                         pyc(0, 1764770000), // not in __pycache__
		"home/user/app.log":                               "user data",
	}
	testutil.WriteFiles(t, root, files, 0o640)
	if err := os.Mkdir(filepath.Join(root, "dev"), 0o777); err != nil {
		t.Fatal(err)
	}
	// Symlinks where the rules look: never followed, never removed.
	outside := filepath.Join(t.TempDir(), "host.log")
	if err := os.WriteFile(outside, []byte("host file"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{
		"var/log/host.log":                 outside,
		"var/log/rel.log":                  "../../home/user/app.log",
		"var/cache/apt/archives/z.deb":     outside,
		"var/lib/systemd/random-seed-link": "random-seed",
	} {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestRoot(t *testing.T) {
	root := syntheticRoot(t)
	var log bytes.Buffer
	if err := Root(t.Context(), root, Options{Epoch: epoch, Log: &log}); err != nil {
		t.Fatal(err)
	}
	empty := []string{
		"var/log/dpkg.log", "var/log/alternatives.log", "var/log/bootstrap.log",
		"var/log/apt/history.log", "var/log/apt/term.log", "var/log/zypp/history", "etc/machine-id",
		"var/cache/apt/archives/lock",
	}
	for _, name := range empty {
		fi, err := os.Lstat(filepath.Join(root, name))
		if err != nil || fi.Size() != 0 || fi.Mode().Perm() != 0o600 { // 0640 under umask 077: kept
			t.Errorf("%s: %v, %v; want an empty file of mode 0600", name, fi, err)
		}
	}
	gone := []string{
		"var/log/apt/eipp.log.xz", "var/cache/apt/pkgcache.bin", "var/cache/apt/srcpkgcache.bin",
		"var/cache/apt/archives/x_1.0_amd64.deb", "var/cache/apt/archives/partial/y.deb",
		"var/cache/zypp/packages/repo", "var/cache/dnf/repo-1234",
		"var/lib/dpkg/status-old", "var/lib/dpkg/diversions-old", "var/cache/ldconfig/aux-cache",
		"var/lib/dbus/machine-id", "var/lib/systemd/random-seed", "var/lib/urandom/random-seed",
		"usr/lib/python3/x/__pycache__/a.cpython-311.pyc",
	}
	for _, name := range gone {
		if _, err := os.Lstat(filepath.Join(root, name)); !os.IsNotExist(err) {
			t.Errorf("%s: %v, want it removed", name, err)
		}
	}
	kept := map[string]string{
		"var/log/journal/keep.journal":                    "a journal is not a text log",
		"var/log/README":                                  "kept",
		"var/lib/dpkg/status":                             "Package: x\n",
		"etc/ld.so.cache":                                 "kept: ldconfig's real cache",
		"usr/lib/python3/x/__pycache__/b.cpython-311.pyc": pyc(0, epoch),
		"usr/lib/python3/x/__pycache__/c.cpython-311.pyc": pyc(3, 1764770000),
		"usr/lib/python3/x/d.pyc":                         pyc(0, 1764770000),
		"home/user/app.log":                               "user data",
		"etc/shadow":                                      "root:*:19675:0:99999:7:::\nold:*:19000:0:99999:7:::\nnew:!:19675::::::\nforced:x:0:0:99999:7:::\nnone:*::0:99999:7:::\n",
		"etc/shadow-":                                     "root:*:19675:0:99999:7:::\n",
	}
	for name, want := range kept {
		if b, err := os.ReadFile(filepath.Join(root, name)); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", name, b, err, want)
		}
	}
	for _, name := range []string{"var/log/host.log", "var/log/rel.log", "var/cache/apt/archives/z.deb", "var/lib/systemd/random-seed-link"} {
		if fi, err := os.Lstat(filepath.Join(root, name)); err != nil || fi.Mode().Type() != fs.ModeSymlink {
			t.Errorf("symlink %s: %v, %v; want it kept", name, fi, err)
		}
	}
	for _, dir := range []string{"", "dev"} {
		fi, err := os.Stat(filepath.Join(root, dir))
		if err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("/%s: %v, %v; want mode 0755", dir, fi, err)
		}
	}
	for _, want := range []string{"truncated /var/log/dpkg.log", "removed /var/cache/ldconfig/aux-cache", "emptied /etc/machine-id", "mode of /dev"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}

	// A second run changes nothing and says nothing.
	log.Reset()
	if err := Root(t.Context(), root, Options{Epoch: epoch, Log: &log}); err != nil || log.Len() != 0 {
		t.Errorf("second Root: %v, log %q; want no change", err, log.String())
	}
}

// TestRootLeavesHostFiles: a symlink in the place of a log, a cache dir or
// the machine-id never makes Root change a file outside the image.
func TestRootLeavesHostFiles(t *testing.T) {
	host := t.TempDir()
	hostFile := filepath.Join(host, "machine-id")
	if err := os.WriteFile(hostFile, []byte("host id\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(host, "dpkg.log"), []byte("host log\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for _, d := range []string{"etc", "var/cache", "var/lib/systemd"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"etc/machine-id":              hostFile,
		"etc/shadow":                  hostFile,
		"var/log":                     host, // a directory symlink out of the root
		"var/cache/dnf":               host,
		"var/cache/apt":               host,
		"var/lib/systemd/random-seed": hostFile,
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	// Stale bytecode behind directory symlinks out of the root.
	stale := pyc(0, 1764770000)
	testutil.WriteFiles(t, host, map[string]string{"__pycache__/h.cpython-311.pyc": stale, "lib/__pycache__/i.cpython-311.pyc": stale}, 0o644)
	for name, target := range map[string]string{"usr/lib/python3/__pycache__": filepath.Join(host, "__pycache__"), "usr/lib/python3/y": filepath.Join(host, "lib")} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := Root(t.Context(), root, Options{Epoch: epoch}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"machine-id": "host id\n", "dpkg.log": "host log\n",
		"__pycache__/h.cpython-311.pyc": stale, "lib/__pycache__/i.cpython-311.pyc": stale} {
		if b, err := os.ReadFile(filepath.Join(host, name)); err != nil || string(b) != want {
			t.Errorf("host file %s = %q, %v; want %q", name, b, err, want)
		}
	}
}

func TestClampShadowEpochZero(t *testing.T) {
	in := "root:*:20425:0:99999:7:::\nforced:x:0:0:99999:7:::\n# comment\n"
	got, changed := clampShadow([]byte(in), 0)
	want := "root:*::0:99999:7:::\nforced:x:0:0:99999:7:::\n# comment\n"
	if string(got) != want || !changed {
		t.Errorf("clampShadow(day 0) = %q, %v; want %q, true", got, changed, want)
	}
}

// walkRegular finds the regular files fs.WalkDir finds, in its order,
// without following a symlink.
func TestWalkRegularAsWalkDir(t *testing.T) {
	root := syntheticRoot(t)
	testutil.WriteFiles(t, root, map[string]string{"a/b/c/d": "x", "a/B": "y", "a/b.c": "z", "Z/1": "", "empty/.hidden": ""}, 0o644)
	if err := os.Symlink("../usr", filepath.Join(root, "a/b/usr-link")); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var want, got []string
	if err := fs.WalkDir(r.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			want = append(want, p)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	dir, err := r.Open(".")
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	if err := walkRegular(t.Context(), dir, ".", func(p string) error { got = append(got, p); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) || len(got) < 30 {
		t.Fatalf("walkRegular() = %q\nwant (fs.WalkDir) %q", got, want)
	}
}
