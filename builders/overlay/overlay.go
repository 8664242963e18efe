package overlay

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/imsbuild/imsbuild/internal/caps"
)

// ErrUnavailable reports a host or parent that cannot be mounted this way;
// the error wrapping it says why. The caller unpacks the parent instead.
var ErrUnavailable = errors.New("overlay unavailable")

// Root is a mounted overlay: the parent below (its squashfs mounted, or
// an unpacked tree), a scratch directory above.
type Root struct {
	dir    string // bound onto itself, shared: the parent of the mounts
	path   string // the merged view
	lower  string // the squashfs mount point, or "" for a tree
	closed bool
}

// Path returns the merged view, the image root to customize and pack.
func (r *Root) Path() string { return r.path }

// Mount mounts the squashfs file sq read-only and an overlay on it, both
// under dir (created; it must be new or empty and must not be removed
// before Close): dir/lower, dir/upper, dir/work and the merged dir/root,
// with dir itself bound onto itself. Name dir "overlay" for [Made]. sq
// may be removed once Mount returns: the loop device holds it.
func Mount(sq, dir string) (*Root, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: not root", ErrUnavailable)
	}
	if err := checkPath(dir); err != nil {
		return nil, err
	}
	if err := checkSuperblock(sq); err != nil {
		return nil, err
	}
	return mount(dir, "", func(lower string) error { return mountSquashfs(sq, lower) })
}

// MountDir mounts an overlay whose lower layer is the directory tree (an
// unpacked parent) under dir, as Mount does with a squashfs: dir/upper,
// dir/work and the merged dir/root. Overlayfs never writes to tree, but
// the caller must keep anything else from changing or removing it until
// Close (overlayfs' behaviour is undefined when a lower layer changes
// under it).
func MountDir(tree, dir string) (*Root, error) {
	tree, err := filepath.Abs(tree)
	if err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	if err := checkPath(tree); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(tree); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("overlay: lower layer %s is not a directory (%v)", tree, err)
	}
	return mount(dir, tree, nil)
}

// mount makes dir and the overlay under it. Its lower layer is the
// directory tree, or when tree is "" what attach mounts at dir/lower.
func mount(dir, tree string, attach func(lower string) error) (_ *Root, err error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: not root", ErrUnavailable)
	}
	if !caps.CanMount() {
		return nil, fmt.Errorf("%w: no CAP_SYS_ADMIN (an unprivileged container)", ErrUnavailable)
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	if err := checkPath(dir); err != nil {
		return nil, err
	}
	r := &Root{dir: dir, path: filepath.Join(dir, "root"), lower: filepath.Join(dir, "lower")}
	lower := r.lower
	if tree != "" {
		r.lower, lower = "", tree
	}
	upper, work := filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	for _, d := range []string{r.lower, upper, work, r.path} {
		if d == "" {
			continue
		}
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, fmt.Errorf("overlay: %w", err)
		}
	}
	// A mount namespace made while the overlay is mounted (kiwi's
	// unshare, a sandbox until it pivots) copies it, and its copy holds
	// the loop device until the namespace ends. An unmount reaches the
	// copies only through a shared parent mount: dir, bound onto itself,
	// is that parent (on a host whose / is shared already, it costs one
	// mount more). Copies kept as slaves then go with ours.
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		return nil, fmt.Errorf("%w: bind %s: %w", ErrUnavailable, dir, err)
	}
	if err := unix.Mount("", dir, "", unix.MS_SHARED, ""); err != nil {
		unmount(dir)
		return nil, fmt.Errorf("%w: make %s shared: %w", ErrUnavailable, dir, err)
	}
	defer func() {
		if err != nil {
			unmount(dir)
		}
	}()
	if r.lower != "" {
		if err := attach(r.lower); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				unmount(r.lower)
			}
		}()
	}
	if err := copyRootAttrs(lower, upper); err != nil {
		return nil, fmt.Errorf("overlay: root of the parent: %w", err)
	}
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work + ",index=on,redirect_dir=on,metacopy=off"
	// volatile: the upper layer is thrown away after the pack, so its
	// syncs (dpkg's fsync of every file, the one at unmount) are wasted.
	// Linux before 5.10 does not know it.
	err = unix.Mount("overlay", r.path, "overlay", 0, opts+",volatile")
	if errors.Is(err, unix.EINVAL) {
		err = unix.Mount("overlay", r.path, "overlay", 0, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: mount overlay: %w", ErrUnavailable, err)
	}
	// The kernel turns index off, with a warning only, when a layer cannot
	// give file handles; hard links would then break on copy-up.
	if o, err := superOptions(r.path); err != nil || !strings.Contains(","+o+",", ",index=on,") {
		unmount(r.path)
		return nil, fmt.Errorf("%w: the kernel mounted the overlay without index=on (%q, %v)", ErrUnavailable, o, err)
	}
	if r.lower != "" {
		// The overlay holds a private clone of its lower layer: the
		// squashfs mount point can go at once, so nothing but the overlay
		// ever reaches the parent, and a mount namespace made meanwhile
		// copies one mount fewer. Close unmounts it if this fails.
		_ = unix.Unmount(r.lower, unix.UMOUNT_NOFOLLOW|unix.MNT_DETACH)
	}
	return r, nil
}

// checkPath refuses a path the overlay's options cannot carry: they are
// one comma-separated string whose lowerdir splits at colons, and a path
// with either (or a backslash, its escape) is not worth the quoting.
func checkPath(p string) error {
	if strings.ContainsAny(p, ",:\\") {
		return fmt.Errorf("%w: path %q has a comma, colon or backslash", ErrUnavailable, p)
	}
	return nil
}

// Close unmounts the overlay and the squashfs, which frees the loop
// device. It waits a little for a mount that is still busy (a process
// that is being killed), then detaches it lazily and says so.
func (r *Root) Close() error {
	if r == nil || r.closed {
		return nil
	}
	r.closed = true
	err := unmount(r.path)
	for _, p := range []string{r.lower, r.dir} {
		if p == "" {
			continue
		}
		if uerr := unmount(p); err == nil {
			err = uerr
		}
	}
	return err
}

// unmount unmounts target, retrying a busy one for up to two seconds
// before a lazy detach (the kernel then finishes it, and frees the loop
// device, once the last user is gone).
func unmount(target string) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := unix.Unmount(target, unix.UMOUNT_NOFOLLOW)
		switch {
		case err == nil || errors.Is(err, unix.EINVAL): // EINVAL: not a mount point
			return nil
		case errors.Is(err, unix.EBUSY) && time.Now().Before(deadline):
			time.Sleep(20 * time.Millisecond)
			continue
		case errors.Is(err, unix.EBUSY):
			if derr := unix.Unmount(target, unix.UMOUNT_NOFOLLOW|unix.MNT_DETACH); derr != nil {
				return fmt.Errorf("unmount %s: %w", target, derr)
			}
			return fmt.Errorf("unmount %s: busy, detached lazily", target)
		}
		return fmt.Errorf("unmount %s: %w", target, err)
	}
}

// mountSquashfs attaches sq to a free loop device, read-only and
// auto-clearing, and mounts it read-only at target.
func mountSquashfs(sq, target string) error {
	backing, err := os.Open(sq)
	if err != nil {
		return fmt.Errorf("overlay: %w", err)
	}
	defer backing.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer ctl.Close()
	cfg := unix.LoopConfig{Fd: uint32(backing.Fd())}
	cfg.Info.Flags = unix.LO_FLAGS_READ_ONLY | unix.LO_FLAGS_AUTOCLEAR
	copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], sq)
	// Another process may take the device LOOP_CTL_GET_FREE gave us
	// before we configure it: then ask again.
	for range 20 {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return fmt.Errorf("%w: no free loop device: %w", ErrUnavailable, err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		loop, err := os.OpenFile(dev, os.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		err = unix.IoctlLoopConfigure(int(loop.Fd()), &cfg)
		if errors.Is(err, unix.EBUSY) {
			loop.Close()
			continue
		}
		if err != nil {
			loop.Close()
			return fmt.Errorf("%w: configure %s: %w", ErrUnavailable, dev, err)
		}
		// The mount holds the device from here; closing our descriptor
		// (which would clear an unmounted device) must come after it.
		err = unix.Mount(dev, target, "squashfs", unix.MS_RDONLY|unix.MS_NODEV|unix.MS_NOSUID, "")
		loop.Close()
		if err != nil {
			return fmt.Errorf("%w: mount squashfs: %w", ErrUnavailable, err)
		}
		return nil
	}
	return fmt.Errorf("%w: every free loop device was taken first", ErrUnavailable)
}

// checkSuperblock refuses a file that is not a squashfs 4.0 with an export
// table (mksquashfs makes one unless -no-exports): overlayfs needs it to
// keep index=on, and so hard links, across copy-up.
func checkSuperblock(sq string) error {
	f, err := os.Open(sq)
	if err != nil {
		return fmt.Errorf("overlay: %w", err)
	}
	defer f.Close()
	var sb [96]byte
	if _, err := io.ReadFull(f, sb[:]); err != nil {
		return fmt.Errorf("%w: squashfs superblock: %w", ErrUnavailable, err)
	}
	le := binary.LittleEndian
	const exportable = 0x80
	switch {
	case le.Uint32(sb[0:]) != 0x73717368:
		return fmt.Errorf("%w: not a squashfs file", ErrUnavailable)
	case le.Uint16(sb[28:]) != 4 || le.Uint16(sb[30:]) != 0:
		return fmt.Errorf("%w: squashfs version %d.%d, want 4.0", ErrUnavailable, le.Uint16(sb[28:]), le.Uint16(sb[30:]))
	case le.Uint16(sb[24:])&exportable == 0:
		return fmt.Errorf("%w: squashfs without an export table", ErrUnavailable)
	}
	return nil
}

// copyRootAttrs gives dst (the upper layer's root, which the merged root
// shows) the mode, owner and extended attributes of src.
func copyRootAttrs(src, dst string) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return err
	}
	if err := os.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	// chmod after chown: chown clears the setuid and setgid bits.
	if err := unix.Chmod(dst, st.Mode&0o7777); err != nil {
		return err
	}
	names, err := listXattrs(src)
	if err != nil {
		return err
	}
	for _, name := range names {
		v, err := getXattr(src, name)
		if err != nil {
			return err
		}
		if err := unix.Lsetxattr(dst, name, v, 0); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	return nil
}

func listXattrs(p string) ([]string, error) {
	n, err := unix.Llistxattr(p, nil)
	if err != nil || n == 0 {
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		return nil, err
	}
	buf := make([]byte, n)
	if n, err = unix.Llistxattr(p, buf); err != nil {
		return nil, err
	}
	var names []string
	for _, b := range bytes.Split(buf[:n], []byte{0}) {
		if len(b) > 0 {
			names = append(names, string(b))
		}
	}
	return names, nil
}

func getXattr(p, name string) ([]byte, error) {
	n, err := unix.Lgetxattr(p, name, nil)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", name, err)
	}
	v := make([]byte, n)
	if n, err = unix.Lgetxattr(p, name, v); err != nil {
		return nil, fmt.Errorf("get %s: %w", name, err)
	}
	return v[:n], nil
}

// superOptions returns the superblock options of the mount at target from
// /proc/self/mountinfo.
func superOptions(target string) (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	opts, found := "", false
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 10 || unescape(fields[4]) != target {
			continue
		}
		// … optional fields, "-", fstype, source, super options.
		for i := 6; i+3 < len(fields); i++ {
			if fields[i] == "-" {
				opts, found = fields[i+3], true // the last mount on target wins
				break
			}
		}
	}
	if err := s.Err(); err != nil {
		return "", err
	}
	if !found {
		return "", fmt.Errorf("%s is not a mount point", target)
	}
	return opts, nil
}

// UnmountUnder detaches every mount at or under dir, deepest first: what
// Mount left in the scratch directory of a process that died (kill -9)
// before Close, so that the directory can be removed.
func UnmountUnder(dir string) error {
	mounts, err := Mounts(dir)
	if err != nil {
		return fmt.Errorf("unmount under %s: %w", dir, err)
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	var errs []error
	for _, m := range slices.Compact(mounts) {
		err := unix.Unmount(m, unix.UMOUNT_NOFOLLOW|unix.MNT_DETACH)
		if err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	return errors.Join(errs...)
}

// Mounts returns the mount points at or under dir, deepest last, from
// /proc/self/mountinfo.
func Mounts(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 5 {
			continue
		}
		p := unescape(fields[4])
		if p == dir || strings.HasPrefix(p, dir+"/") {
			out = append(out, p)
		}
	}
	return out, s.Err()
}

// Made reports whether line, a line of /proc/self/mountinfo, is one of
// the mounts Mount makes under a dir named "overlay" (dir bound onto
// itself, an overlay at …/overlay/root, a squashfs at …/overlay/lower). Tests that compare the host's mount table skip them:
// builds and tests beside them mount parents in the same namespace.
func Made(line string) bool {
	fields := strings.Fields(line)
	for i := 6; i+1 < len(fields); i++ {
		if fields[i] != "-" {
			continue
		}
		p, fstype := unescape(fields[4]), fields[i+1]
		return fstype == "overlay" && strings.HasSuffix(p, "/overlay/root") ||
			fstype == "squashfs" && strings.HasSuffix(p, "/overlay/lower") ||
			strings.HasSuffix(p, "/overlay") && strings.HasSuffix(unescape(fields[3]), "/overlay") // the bind

	}
	return false
}

// HostMounts returns /proc/self/mountinfo without the lines Made reports
// and without the test cluster's mounts: the mount table a test compares
// before and after the code it tests, which builds and tests running
// beside it change by mounting parents, and which a development cluster
// (`make k8s-up`, its state under TestClusterState) changes whenever a
// pod starts or stops.
func HostMounts() (string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	var sb strings.Builder
	for line := range strings.Lines(string(b)) {
		if !Made(line) && !clusterMount(line) {
			sb.WriteString(line)
		}
	}
	return sb.String(), nil
}

// TestClusterState is where scripts/k8s/cluster.sh keeps the test
// cluster: the kubelet's root, containerd's root and state, pod network
// namespaces — every mount the cluster makes is below it.
const TestClusterState = "/var/lib/imsbuild-k8s/"

// clusterMount reports whether line, a line of /proc/self/mountinfo, is
// a mount point below TestClusterState.
func clusterMount(line string) bool {
	fields := strings.Fields(line)
	return len(fields) > 4 && strings.HasPrefix(unescape(fields[4])+"/", TestClusterState)
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, ok := octal(s[i+1 : i+4]); ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func octal(s string) (byte, bool) {
	if len(s) != 3 {
		return 0, false
	}
	v := 0
	for _, c := range s {
		if c < '0' || c > '7' {
			return 0, false
		}
		v = v*8 + int(c-'0')
	}
	return byte(v), v < 256
}
