package overlay

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/imsbuild/imsbuild/builders/pack"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// mountOrSkip mounts sq under dir; an ErrUnavailable skips the test unless
// IMSBUILD_TEST_REQUIRE names "overlay" (or is "all"), as for a missing tool.
func mountOrSkip(t *testing.T, sq, dir string) *Root {
	t.Helper()
	return mountWithOrSkip(t, Mount, sq, dir)
}

// mountWithOrSkip is mountOrSkip with mount (Mount or MountDir).
func mountWithOrSkip(t *testing.T, mount func(lower, dir string) (*Root, error), lower, dir string) *Root {
	t.Helper()
	r, err := mount(lower, dir)
	if errors.Is(err, ErrUnavailable) {
		req := os.Getenv("IMSBUILD_TEST_REQUIRE")
		if req == "all" || slices.Contains(strings.FieldsFunc(req, func(r rune) bool { return r == ',' || r == ' ' }), "overlay") {
			t.Fatalf("overlay is required (IMSBUILD_TEST_REQUIRE): %v", err)
		}
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// parentTree makes a root with what a pack must keep: hard links, a device
// node, a fifo, setuid and setgid files, user.* and security.* attributes,
// symlinks, an odd root mode and owner, and nested directories.
func parentTree(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "parent")
	for _, d := range []string{"etc", "usr/bin", "usr/lib/mod", "var/lib/gone/deep", "opt/dir2file/sub", "opt/moved/x", "dev"} {
		must(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	files := map[string]string{
		"etc/hosts": "127.0.0.1 localhost\n", "etc/linked": "one\n", "usr/lib/mod/a.so": "aaaa",
		"var/lib/gone/deep/f": "x", "var/lib/gone/g": "y", "opt/dir2file/sub/f": "z", "opt/file2dir": "w",
		"opt/moved/x/y": "moved", "usr/bin/su": "#!/bin/sh\n", "etc/deleted": "bye",
	}
	for name, content := range files {
		must(t, os.WriteFile(filepath.Join(root, name), []byte(content), 0o644))
	}
	must(t, os.Link(filepath.Join(root, "etc/linked"), filepath.Join(root, "usr/lib/linked")))
	must(t, os.Link(filepath.Join(root, "etc/hosts"), filepath.Join(root, "etc/hosts.link")))
	must(t, unix.Chmod(filepath.Join(root, "usr/bin/su"), 0o4755))
	must(t, unix.Mknod(filepath.Join(root, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(t, unix.Mkfifo(filepath.Join(root, "dev/fifo"), 0o600))
	must(t, os.Symlink("../etc/hosts", filepath.Join(root, "usr/hosts")))
	must(t, unix.Lsetxattr(filepath.Join(root, "usr/lib/mod/a.so"), "user.note", []byte("kept"), 0))
	must(t, unix.Lsetxattr(filepath.Join(root, "usr/bin/su"), "security.capability",
		[]byte{0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0)) // cap_net_raw
	must(t, os.Lchown(root, 12, 34))
	must(t, os.Chmod(root, 0o750))
	return root
}

// customize changes root the ways that need whiteouts, opaque directories,
// copy-up of hard links and attributes, and directory renames.
func customize(t *testing.T, root string) {
	t.Helper()
	p := func(n string) string { return filepath.Join(root, n) }
	must(t, os.Remove(p("etc/deleted")))
	must(t, os.RemoveAll(p("var/lib/gone")))
	must(t, os.RemoveAll(p("opt/dir2file")))
	must(t, os.WriteFile(p("opt/dir2file"), []byte("now a file"), 0o600))
	must(t, os.Remove(p("opt/file2dir")))
	must(t, os.MkdirAll(p("opt/file2dir/sub"), 0o711))
	must(t, os.WriteFile(p("opt/file2dir/sub/f"), []byte("now a dir"), 0o644))
	// A directory removed and made again: opaque, nothing of the old one
	// shows through.
	must(t, os.RemoveAll(p("usr/lib/mod")))
	must(t, os.Mkdir(p("usr/lib/mod"), 0o700))
	must(t, os.WriteFile(p("usr/lib/mod/b.so"), []byte("bbbb"), 0o644))
	// A write through one name of a hard link shows through the other.
	f, err := os.OpenFile(p("etc/linked"), os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = f.WriteString("two\n")
	must(t, err)
	must(t, f.Close())
	must(t, os.Chmod(p("etc/hosts"), 0o600)) // a metadata-only copy-up of a linked file
	must(t, unix.Lsetxattr(p("etc/hosts"), "user.added", []byte("1"), 0))
	must(t, os.Rename(p("opt/moved"), p("opt/renamed")))
	must(t, unix.Mknod(p("dev/zero"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 5))))
	must(t, unix.Chmod(p("usr/bin/su"), 0o6755))
}

// The merged view of either lower layer, the parent's squashfs mounted or
// its unpacked tree, customized, packs to the bytes of the unpacked tree
// customized in place; the parent stays as it was.
func TestMountPacksLikeUnpack(t *testing.T) {
	for _, lower := range []string{"squashfs", "tree"} {
		t.Run(lower, func(t *testing.T) { testMountPacksLikeUnpack(t, lower) })
	}
}

// treeStat lists every entry of root with its lstat, ctime included: what
// any change to the tree changes.
func treeStat(t *testing.T, root string) string {
	t.Helper()
	out, err := exec.Command("find", root, "-printf", "%P %M %U:%G %s %i %n %T@ %C@\\n").Output()
	must(t, err)
	return string(out)
}

func testMountPacksLikeUnpack(t *testing.T, lower string) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "mksquashfs")
	unsquashfs := testutil.RequireTool(t, "unsquashfs")
	ctx := t.Context()
	tmp := t.TempDir()
	parentOut := filepath.Join(tmp, "parent-out")
	must(t, os.Mkdir(parentOut, 0o755))
	arts, err := pack.Pack(ctx, parentTree(t), parentOut, pack.Options{})
	must(t, err)
	sq := arts[0].Path
	before := testutil.FileSHA256(t, sq)

	// The unpack path: unsquashfs, customize, pack.
	unsquash := func(dst string) {
		if out, err := exec.Command(unsquashfs, "-q", "-no-progress", "-d", dst, sq).CombinedOutput(); err != nil {
			t.Fatalf("unsquashfs: %v\n%s", err, out)
		}
	}
	unpacked := filepath.Join(tmp, "unpacked")
	unsquash(unpacked)
	customize(t, unpacked)
	wantOut := filepath.Join(tmp, "want")
	must(t, os.Mkdir(wantOut, 0o755))
	want, err := pack.Pack(ctx, unpacked, wantOut, pack.Options{})
	must(t, err)

	// The overlay path.
	dir := filepath.Join(tmp, "overlay")
	var r *Root
	var tree, treeBefore string
	if lower == "tree" {
		tree = filepath.Join(tmp, "tree")
		unsquash(tree)
		treeBefore = treeStat(t, tree)
		r = mountWithOrSkip(t, MountDir, tree, dir)
	} else {
		r = mountOrSkip(t, sq, dir)
	}
	if fi, err := os.Stat(r.Path()); err != nil || fi.Mode().Perm() != 0o750 || fi.Sys().(*syscall.Stat_t).Uid != 12 {
		t.Fatalf("merged root = %v, %v; want the parent root's mode 0750 and owner 12", fi.Mode(), err)
	}
	if o, err := superOptions(r.Path()); err != nil || !strings.Contains(o, "volatile") {
		t.Errorf("overlay options %q (%v), want volatile", o, err)
	}
	customize(t, r.Path())
	if b, err := os.ReadFile(filepath.Join(r.Path(), "usr/lib/linked")); err != nil || string(b) != "one\ntwo\n" {
		t.Fatalf("the other name of the changed hard link holds %q, %v; want both lines", b, err)
	}
	gotOut := filepath.Join(tmp, "got")
	must(t, os.Mkdir(gotOut, 0o755))
	got, err := pack.Pack(ctx, r.Path(), gotOut, pack.Options{})
	must(t, err)
	if err := r.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if g, w := testutil.FileSHA256(t, got[0].Path), testutil.FileSHA256(t, want[0].Path); g != w {
		list := func(p string) string {
			out, _ := exec.Command(unsquashfs, "-lln", p).CombinedOutput()
			return string(out)
		}
		t.Fatalf("overlay rootfs %s, unpacked %s; want equal\noverlay:\n%s\nunpacked:\n%s", g, w, list(got[0].Path), list(want[0].Path))
	}
	out, err := exec.Command(unsquashfs, "-lc", got[0].Path).CombinedOutput()
	must(t, err)
	for _, gone := range []string{"etc/deleted", "var/lib/gone", "opt/dir2file/sub", "usr/lib/mod/a.so", "opt/moved"} {
		if strings.Contains(string(out), "squashfs-root/"+gone+"\n") {
			t.Errorf("%s is still in the child:\n%s", gone, out)
		}
	}
	if testutil.FileSHA256(t, sq) != before {
		t.Fatal("the parent squashfs changed")
	}
	if tree != "" {
		if after := treeStat(t, tree); after != treeBefore {
			t.Fatalf("the parent tree changed:\n%s\nwant\n%s", after, treeBefore)
		}
	}
	assertNothingLeft(t, dir, sq)
}

// assertNothingLeft fails when a mount under dir or a loop device on sq is
// left.
func assertNothingLeft(t *testing.T, dir, sq string) {
	t.Helper()
	if m, err := Mounts(dir); err != nil || len(m) > 0 {
		t.Errorf("mounts left under %s: %v %v", dir, m, err)
	}
	// A mount namespace that another test's sandbox made meanwhile holds
	// a copy of the overlay, and so the loop device, until it has pivoted
	// away from the host's mounts: wait for that, not longer.
	deadline := time.Now().Add(20 * time.Second)
	for len(loopsOf(t, sq)) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if l := loopsOf(t, sq); len(l) > 0 {
		t.Errorf("loop devices left on %s: %v", sq, l)
	}
}

// loopsOf returns the loop devices whose backing file is sq.
func loopsOf(t *testing.T, sq string) []string {
	t.Helper()
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && strings.TrimSpace(string(b)) == sq {
			out = append(out, f)
		}
	}
	return out
}

// etcSquashfs packs a tree of one empty /etc under tmp, the least a mount
// test needs, and returns the squashfs's path.
func etcSquashfs(t *testing.T, tmp string) string {
	t.Helper()
	testutil.RequireTool(t, "mksquashfs")
	tree := filepath.Join(tmp, "tree")
	must(t, os.MkdirAll(filepath.Join(tree, "etc"), 0o755))
	out := filepath.Join(tmp, "out")
	must(t, os.Mkdir(out, 0o755))
	arts, err := pack.Pack(t.Context(), tree, out, pack.Options{})
	must(t, err)
	return arts[0].Path
}

func TestMountRefuses(t *testing.T) {
	testutil.RequireRoot(t)
	mksquashfs := testutil.RequireTool(t, "mksquashfs")
	tmp := t.TempDir()
	tree := filepath.Join(tmp, "tree")
	must(t, os.MkdirAll(filepath.Join(tree, "etc"), 0o755))
	noExports := filepath.Join(tmp, "noexp.sq")
	if out, err := exec.Command(mksquashfs, tree, noExports, "-no-exports", "-quiet", "-no-progress").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	notSquashfs := filepath.Join(tmp, "tar")
	must(t, os.WriteFile(notSquashfs, make([]byte, 4096), 0o644))
	for _, tc := range []struct{ name, sq, dir, want string }{
		{"no export table", noExports, filepath.Join(tmp, "a/overlay"), "export table"},
		{"not squashfs", notSquashfs, filepath.Join(tmp, "b/overlay"), "not a squashfs"},
		{"comma in path", noExports, filepath.Join(tmp, "c,d/overlay"), "comma"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Mount(tc.sq, tc.dir)
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tc.want) {
				r.Close()
				t.Fatalf("Mount() = %v, want ErrUnavailable saying %q", err, tc.want)
			}
			assertNothingLeft(t, tc.dir, tc.sq)
		})
	}
}

// A process still in the merged view when Close runs (a sandbox being
// killed) delays the unmount; Close still leaves no mount and, once the
// process is gone, no loop device.
func TestCloseBusy(t *testing.T) {
	testutil.RequireRoot(t)
	tmp := t.TempDir()
	sq := etcSquashfs(t, tmp)
	dir := filepath.Join(tmp, "overlay")
	r := mountOrSkip(t, sq, dir)
	cmd := exec.Command("sleep", "7311")
	cmd.Dir = filepath.Join(r.Path(), "etc")
	must(t, cmd.Start())
	defer cmd.Process.Kill()
	err := r.Close()
	if err == nil || !strings.Contains(err.Error(), "lazily") {
		t.Errorf("Close() with a process inside = %v, want a lazy detach", err)
	}
	if m, _ := Mounts(dir); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
	cmd.Process.Kill()
	cmd.Wait()
	// The lazily detached squashfs goes, and its loop device with it,
	// once the process has left; poll for it.
	assertNothingLeft(t, dir, sq)
}

func TestMade(t *testing.T) {
	for _, tc := range []struct {
		line string
		want bool
	}{
		{"148 27 0:46 / /w/image.c-1/overlay/root rw,relatime - overlay overlay rw,lowerdir=/w/overlay/lower,index=on", true},
		{"49 27 7:1 / /w/image.c-1/overlay/lower ro,nosuid,nodev,relatime - squashfs /dev/loop1 ro,errors=continue", true},
		{"50 27 7:1 / /w/image.c-1/overlay/lower ro,relatime shared:5 - squashfs /dev/loop1 ro", true},
		{"51 27 0:47 / /w/root/proc rw - proc proc rw", false},
		{"52 27 0:48 / /w/overlay/root rw - tmpfs tmpfs rw", false},
		{"53 27 0:49 / /w/overlay/lower\\040x rw - squashfs /dev/loop2 ro", false},
		{"54 27 254:0 /w/image.c-1/overlay /w/image.c-1/overlay rw,relatime shared:1 - ext4 /dev/vda rw", true},
		{"55 27 254:0 /srv /w/image.c-1/overlay rw,relatime - ext4 /dev/vda rw", false},
	} {
		if got := Made(tc.line); got != tc.want {
			t.Errorf("Made(%q) = %v, want %v", tc.line, got, tc.want)
		}
	}
}

func TestClusterMount(t *testing.T) {
	for _, tc := range []struct {
		line string
		want bool
	}{
		{"151 27 254:0 /var/lib/imsbuild-k8s/cluster/kubelet /var/lib/imsbuild-k8s/cluster/kubelet rw,relatime shared:1 - ext4 /dev/vda rw", true},
		{"160 151 0:60 / /var/lib/imsbuild-k8s/cluster/kubelet/pods/x/volumes/kubernetes.io~projected/kube-api-access rw - tmpfs tmpfs rw", true},
		{"161 27 0:61 / /var/lib/imsbuild-k8s rw - tmpfs tmpfs rw", true},
		{"162 27 0:62 / /var/lib/imsbuild-k8s-other rw - tmpfs tmpfs rw", false},
		{"163 27 0:63 / /var/lib/kubelet rw - tmpfs tmpfs rw", false},
		{"164 27 254:0 /var/lib/imsbuild-k8s /srv rw - ext4 /dev/vda rw", false},
	} {
		if got := clusterMount(tc.line); got != tc.want {
			t.Errorf("clusterMount(%q) = %v, want %v", tc.line, got, tc.want)
		}
	}
}

// A mount namespace made while the overlay is mounted, with its copies as
// slaves (as kiwi's unshare makes them), loses its copy when Close
// unmounts ours, and so frees the loop device while it still runs.
func TestCloseReachesSlaveNamespaces(t *testing.T) {
	testutil.RequireRoot(t)
	unshare := testutil.RequireTool(t, "unshare")
	tmp := t.TempDir()
	sq := etcSquashfs(t, tmp)
	r := mountOrSkip(t, sq, filepath.Join(tmp, "overlay"))
	cmd := exec.Command(unshare, "--mount", "--propagation", "slave", "sleep", "7312")
	must(t, cmd.Start())
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	theirs := filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "mountinfo")
	inTheirs := func() bool {
		b, err := os.ReadFile(theirs)
		return err == nil && strings.Contains(string(b), r.Path())
	}
	deadline := time.Now().Add(20 * time.Second)
	for !inTheirs() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !inTheirs() {
		t.Fatal("the new namespace has no copy of the overlay")
	}
	must(t, r.Close())
	deadline = time.Now().Add(5 * time.Second)
	for (inTheirs() || len(loopsOf(t, sq)) > 0) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if inTheirs() || len(loopsOf(t, sq)) > 0 {
		b, _ := os.ReadFile(theirs)
		var lines []string
		for l := range strings.Lines(string(b)) {
			if strings.Contains(l, tmp) {
				lines = append(lines, l)
			}
		}
		t.Fatalf("after Close the other namespace still has the overlay (%v) or the loop device is left (%v):\n%s", inTheirs(), loopsOf(t, sq), lines)
	}
}

// What a process killed before Close left is unmounted by UnmountUnder,
// and its loop device freed.
func TestUnmountUnder(t *testing.T) {
	testutil.RequireRoot(t)
	tmp := t.TempDir()
	sq := etcSquashfs(t, tmp)
	work := filepath.Join(tmp, "run-1")
	for _, step := range []string{"image.a-1", "image.b-2"} {
		mountOrSkip(t, sq, filepath.Join(work, step, "overlay")) // never closed
	}
	if m, _ := Mounts(work); len(m) != 4 {
		t.Fatalf("Mounts() = %v, want the bind and the overlay of each", m)
	}
	if err := UnmountUnder(work); err != nil {
		t.Fatalf("UnmountUnder() = %v", err)
	}
	assertNothingLeft(t, work, sq)
	if err := os.RemoveAll(work); err != nil {
		t.Fatalf("remove after UnmountUnder: %v", err)
	}
}
