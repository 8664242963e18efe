package sandbox

import (
	"path/filepath"
	"testing"

	"github.com/imsbuild/imsbuild/internal/testutil"
)

// TestPidsDir: the own v1 pids cgroup is found under the hierarchy's mount
// point less the mount's root: on a host (root "/") and in a privileged
// Kubernetes pod, where the container's cgroup is the mount's root and
// joining the full path to the mount point named no directory (every
// jailed customize in a pod failed with "no pids hierarchy").
func TestPidsDir(t *testing.T) {
	const pod = "/kubepods/besteffort/pod179e6fe2/b116b470d9b6"
	cgroup := "12:pids:" + pod + "\n0::" + pod + "\n"
	for _, tc := range []struct{ name, mountinfo, cgroup, want string }{
		{"host", "30 25 0:26 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,pids\n",
			"12:pids:/user.slice/session-3.scope\n", "/sys/fs/cgroup/pids/user.slice/session-3.scope"},
		{"pod", "247 246 0:81 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw,mode=755\n" +
			"248 247 0:29 " + pod + " /sys/fs/cgroup/cpu rw,nosuid - cgroup cgroup rw,cpu\n" +
			"252 247 0:33 " + pod + " /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,pids\n",
			cgroup, "/sys/fs/cgroup/pids"},
		{"pod, a child cgroup", "252 247 0:33 " + pod + " /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n",
			"12:pids:" + pod + "/imsbuild\n", "/sys/fs/cgroup/pids/imsbuild"},
	} {
		dir := t.TempDir()
		testutil.WriteFiles(t, dir, map[string]string{"mountinfo": tc.mountinfo, "cgroup": tc.cgroup}, 0o644)
		got, err := pidsDir(filepath.Join(dir, "mountinfo"), filepath.Join(dir, "cgroup"))
		if err != nil || got != tc.want {
			t.Errorf("%s: pidsDir() = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	// A cgroup outside the mounted part of the hierarchy, or no pids mount.
	dir := t.TempDir()
	testutil.WriteFiles(t, dir, map[string]string{
		"mountinfo": "252 247 0:33 " + pod + " /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n",
		"cgroup":    "12:pids:/kubepods/other\n",
		"nopids":    "248 247 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n",
	}, 0o644)
	if got, err := pidsDir(filepath.Join(dir, "mountinfo"), filepath.Join(dir, "cgroup")); err == nil {
		t.Errorf("pidsDir() outside the mount = %q, want an error", got)
	}
	if got, err := pidsDir(filepath.Join(dir, "nopids"), filepath.Join(dir, "cgroup")); err == nil {
		t.Errorf("pidsDir() without a pids mount = %q, want an error", got)
	}
}
