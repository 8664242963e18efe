package sandbox_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// privilegedScript needs a privileged sandbox: it mounts a tmpfs in the
// image root, makes a device node and reports what the command sees.
const privilegedScript = `set -e
mkdir -p /mnt/image/m
mount -t tmpfs imsbuild-privileged-test /mnt/image/m
mknod /mnt/image/m/null c 1 3
echo x > /mnt/image/m/null
grep -E '^(CapEff|Seccomp):' /proc/self/status
test -c /dev/loop-control && echo "host dev"
test -d /sys/kernel && echo "sysfs"
awk '$2 ~ "^/proc/." { print "proc mount " $2 }' /proc/self/mounts
`

func TestRuncPrivileged(t *testing.T) {
	testutil.RequireRoot(t)
	sb, err := sandbox.NewRunc(testutil.RequireTool(t, "runc"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("the host has no /dev/loop-control to look for: %v", err)
	}
	tests := []struct {
		name string
		spec sandbox.Spec
	}{
		{"builder root", sandbox.Spec{BuilderRoot: testutil.BusyboxRoot(t, false)}},
		{"jail", sandbox.Spec{Jail: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := testutil.BusyboxRoot(t, false)
			s := tt.spec
			s.Root, s.Env = root, []string{"PATH=/usr/bin:/bin:/usr/sbin:/sbin"}
			script := privilegedScript
			if s.Jail {
				script = strings.ReplaceAll(script, "/mnt/image", "")
			}
			mounts := mountinfo(t)
			s.Privileged = true
			stdout, stderr, err := shell(t, sb, s, script)
			if err != nil {
				t.Fatalf("Run(privileged) = %v, stderr:\n%s", err, stderr)
			}
			for _, want := range []string{"Seccomp:\t0", "host dev", "sysfs"} {
				if !strings.Contains(stdout, want) {
					t.Errorf("stdout = %q, want %q", stdout, want)
				}
			}
			if want := "CapEff:\t" + capBounding(t) + "\n"; !strings.Contains(stdout, want) {
				t.Errorf("stdout = %q, want %q: every capability the test has", stdout, want)
			}
			if strings.Contains(stdout, "proc mount") {
				t.Errorf("masked or read-only /proc paths in a privileged run:\n%s", stdout)
			}
			if got := mountinfo(t); got != mounts {
				t.Errorf("the sandbox's mount reached the host:\n%s", got)
			}
			if _, err := os.Lstat(filepath.Join(root, "m", "null")); err == nil {
				t.Error("the device node was made in the image root, not in the sandbox's tmpfs")
			}

			s.Privileged = false
			if _, _, err := shell(t, sb, s, script); err == nil {
				t.Error("Run(unprivileged) mounted a tmpfs; want it refused")
			}
		})
	}
}

func TestPrivilegedNeedsRunc(t *testing.T) {
	testutil.RequireRoot(t)
	for _, be := range backends() {
		if be.name == sandbox.BackendRunc {
			continue
		}
		t.Run(be.name, func(t *testing.T) {
			sb := be.open(t)
			err := sb.Run(t.Context(), sandbox.Spec{Root: testutil.BusyboxRoot(t, false), Args: []string{"/bin/true"}, Privileged: true})
			if !errors.Is(err, sandbox.ErrPrivileged) {
				t.Errorf("Run(privileged) = %v, want ErrPrivileged", err)
			}
		})
	}
}

// capBounding returns the bounding capability set of the test process, in
// the hex form of /proc/self/status.
func capBounding(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("no CapBnd in /proc/self/status")
	return ""
}
