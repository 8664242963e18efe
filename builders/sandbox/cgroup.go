package sandbox

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// cgroupFS is where the cgroup hierarchies are mounted.
const cgroupFS = "/sys/fs/cgroup"

// pidsCgroup is the pids cgroup of one bwrap or native run: the backend's
// process starts in it, so that everything of the sandbox counts against
// its pids.max and a fork bomb stays inside. remove deletes it.
type pidsCgroup struct {
	dir string // the cgroup's directory
	v2  bool   // unified hierarchy: the process is cloned into it (CLONE_INTO_CGROUP)
	fd  int    // v2: the directory, for SysProcAttr.CgroupFD; -1 otherwise
}

// newPidsCgroup creates a pids cgroup limited to limit tasks: on cgroup v2
// under the root cgroup (the only one without the no-internal-processes
// rule), on v1 under imsbuild's own cgroup of the pids hierarchy.
func newPidsCgroup(limit int) (*pidsCgroup, error) {
	parent, v2, err := pidsParent()
	if err != nil {
		return nil, err
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("sandbox cgroup: %w", err)
	}
	cg := &pidsCgroup{dir: filepath.Join(parent, "imsbuild-sandbox-"+hex.EncodeToString(b[:])), v2: v2, fd: -1}
	if err := os.Mkdir(cg.dir, 0o755); err != nil {
		return nil, fmt.Errorf("sandbox cgroup: %w", err)
	}
	if err := os.WriteFile(filepath.Join(cg.dir, "pids.max"), []byte(strconv.Itoa(limit)), 0o644); err != nil {
		return cg, fmt.Errorf("sandbox cgroup: %w", err)
	}
	if v2 {
		fd, err := unix.Open(cg.dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return cg, fmt.Errorf("sandbox cgroup: %w", err)
		}
		cg.fd = fd
	}
	return cg, nil
}

// pidsParent returns the directory to create sandbox cgroups in and whether
// it is on cgroup v2.
func pidsParent() (string, bool, error) {
	if b, err := os.ReadFile(filepath.Join(cgroupFS, "cgroup.controllers")); err == nil {
		if !hasWord(string(b), "pids") {
			return "", false, errors.New("sandbox cgroup: the pids controller is not available")
		}
		ctl := filepath.Join(cgroupFS, "cgroup.subtree_control")
		if b, err := os.ReadFile(ctl); err != nil || !hasWord(string(b), "pids") {
			if err := os.WriteFile(ctl, []byte("+pids"), 0o644); err != nil {
				return "", false, fmt.Errorf("sandbox cgroup: enable pids: %w", err)
			}
		}
		return cgroupFS, true, nil
	}
	dir, err := pidsDir("/proc/self/mountinfo", "/proc/self/cgroup")
	if err != nil {
		return "", false, err
	}
	if _, err := os.Stat(filepath.Join(dir, "tasks")); err != nil {
		return "", false, fmt.Errorf("sandbox cgroup: no pids hierarchy: %w", err)
	}
	return dir, false, nil
}

// pidsDir returns the directory of the process's own v1 pids cgroup: its
// path in the hierarchy (cgroupFile) under the mount point of the pids
// hierarchy (mountinfo), less the mount's root. On a host the root is "/";
// in a container (a privileged Kubernetes pod) the container's own cgroup
// is mounted at /sys/fs/cgroup/pids while /proc/self/cgroup still names
// its full path, which does not exist under the mount point.
func pidsDir(mountinfo, cgroupFile string) (string, error) {
	own, err := ownPidsCgroup(cgroupFile)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(mountinfo)
	if err != nil {
		return "", fmt.Errorf("sandbox cgroup: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - TYPE SOURCE SUPEROPTS
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 3 || g[0] != "cgroup" || !hasWord(strings.ReplaceAll(g[2], ",", " "), "pids") {
			continue
		}
		root, mnt := filepath.Clean(f[3]), filepath.Clean(f[4])
		rel, err := filepath.Rel(root, own)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			return "", fmt.Errorf("sandbox cgroup: own pids cgroup %s is outside the mounted %s", own, root)
		}
		return filepath.Join(mnt, rel), nil
	}
	return "", errors.New("sandbox cgroup: no pids hierarchy mounted")
}

// ownPidsCgroup returns the path in the v1 pids hierarchy of the process or
// thread whose cgroup file is name.
func ownPidsCgroup(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", fmt.Errorf("sandbox cgroup: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) == 3 && hasWord(strings.ReplaceAll(parts[1], ",", " "), "pids") {
			return filepath.Clean("/" + parts[2]), nil
		}
	}
	return "", errors.New("sandbox cgroup: no pids hierarchy")
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

// remove deletes the cgroup once its processes are gone, retrying briefly
// while the kernel finishes their exit (EBUSY).
func (cg *pidsCgroup) remove() error {
	if cg == nil {
		return nil
	}
	if cg.fd >= 0 {
		unix.Close(cg.fd)
		cg.fd = -1
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := unix.Rmdir(cg.dir)
		switch {
		case err == nil, errors.Is(err, fs.ErrNotExist):
			return nil
		case errors.Is(err, syscall.EBUSY) && time.Now().Before(deadline):
			time.Sleep(5 * time.Millisecond)
			continue
		}
		return fmt.Errorf("sandbox cgroup %s: %w", cg.dir, err)
	}
}

// startConfined starts cmd from an OS thread of its own with the sandbox
// umask and inside cg, and keeps that thread until done is closed, since
// Pdeathsig fires when the thread that started the process exits. The
// thread gets a private umask (unshare CLONE_FS) so that imsbuild's own
// umask is untouched; it never returns to the scheduler, the goroutine ends
// locked and Go ends the thread with it; every other child with a
// parent-death signal is started through internal/threadpin for that reason.
func startConfined(cmd *exec.Cmd, cg *pidsCgroup, done <-chan struct{}) error {
	if cg != nil && cg.v2 {
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, cg.fd
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- startOnThread(cmd, cg)
		<-done
	}()
	return <-errc
}

// startOnThread is startConfined on the locked thread. On cgroup v1 the
// thread itself joins the cgroup for the fork (a v1 hierarchy moves single
// threads) and leaves it again.
func startOnThread(cmd *exec.Cmd, cg *pidsCgroup) error {
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("sandbox: unshare fs: %w", err)
	}
	unix.Umask(sandboxUmask)
	if cg == nil || cg.v2 {
		return cmd.Start()
	}
	own, err := pidsDir("/proc/self/mountinfo", "/proc/thread-self/cgroup")
	if err != nil {
		return err
	}
	tid := []byte(strconv.Itoa(unix.Gettid()))
	if err := os.WriteFile(filepath.Join(cg.dir, "tasks"), tid, 0o644); err != nil {
		return fmt.Errorf("sandbox cgroup: %w", err)
	}
	err = cmd.Start()
	// Should leaving fail, the thread keeps the cgroup busy only until it
	// ends with its goroutine, which remove waits for.
	_ = os.WriteFile(filepath.Join(own, "tasks"), tid, 0o644)
	return err
}
