package sandbox_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// tryFunc defines try for the hostile scripts: it runs a command and prints
// "done" when it worked, "missing" when the command does not exist and
// "blocked" when it failed, so that a missing tool never passes for a
// refused operation.
const tryFunc = `try() { "$@" >/dev/null 2>&1; s=$?; case $s in 0) echo done;; 126|127) echo missing;; *) echo blocked;; esac; }
`

// confinedStatus is what /proc/self/status says of a confined command: the
// container default capabilities without MKNOD and NET_RAW (CHOWN,
// DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP,
// NET_BIND_SERVICE, SYS_CHROOT, AUDIT_WRITE, SETFCAP), no_new_privs (so
// no exec gains any) and a seccomp filter. bwrap run as root leaves the
// bounding set alone and hands its set on as ambient capabilities, so
// those are not compared.
const confinedStatus = "CapPrm:\t00000000a00405fb\nCapEff:\t00000000a00405fb\nNoNewPrivs:\t1\nSeccomp:\t2\n"

// hostileCase is something a script must not be able to do in a confined
// sandbox. script runs with $PROBE set to the probe program and $IMAGE to
// where the image root is ("" jailed, /mnt/image not).
type hostileCase struct {
	name   string
	script string
	want   string
	probe  string // a probe the host must pass for the case to mean something
}

func hostileCases() []hostileCase {
	return []hostileCase{
		{name: "capabilities", script: `grep -E '^(CapPrm|CapEff|NoNewPrivs|Seccomp):' /proc/self/status`, want: confinedStatus},
		{name: "mount tmpfs", script: `mkdir -p /tmp/m && try mount -t tmpfs imsbuild-hostile /tmp/m`, want: "blocked\n"},
		{name: "remount root rw", script: `try mount -o remount,bind,rw /`, want: "blocked\n"},
		{name: "mknod", script: `try mknod /tmp/null c 1 3`, want: "blocked\n"},
		{name: "user namespace", script: `try unshare -U -r true`, want: "blocked\n"},
		{name: "open_by_handle_at", script: `$PROBE open-by-handle`, want: "open-by-handle: operation not permitted\n", probe: "open-by-handle"},
		// bwrap and native refuse other ABIs outright; runc filters them.
		{name: "i386 mount", script: `$PROBE mount-i386`, want: "mount-i386: refused\n", probe: "mount-i386"},
		{name: "x32 mount", script: `$PROBE mount-x32`, want: "mount-x32: refused\n", probe: "mount-x32"},
		// Rewrites the host-wide value with itself: harmless should it work.
		{name: "proc sys read-only", script: `read -r v </proc/sys/kernel/core_pattern && try sh -c 'printf "%s\n" "$1" >/proc/sys/kernel/core_pattern' - "$v"`, want: "blocked\n"},
	}
}

// TestHostileScript runs what an audit did from a customize script, in every
// backend, jailed and not: each must fail.
func TestHostileScript(t *testing.T) {
	testutil.RequireRoot(t)
	probe := testutil.BuildStatic(t, "./testdata/probe")
	hostOK := probesOnHost(t, probe)
	forEachBackend(t, func(t *testing.T, sb sandbox.Sandbox) {
		for _, jail := range []bool{true, false} {
			t.Run(fmt.Sprintf("jail=%v", jail), func(t *testing.T) {
				for _, tc := range hostileCases() {
					t.Run(tc.name, func(t *testing.T) {
						if tc.probe != "" && !hostOK[tc.probe] {
							t.Skipf("probe %s fails on the host already", tc.probe)
						}
						root := testutil.BusyboxRoot(t, false)
						testutil.CopyExecutable(t, probe, filepath.Join(root, "probe"))
						image := ""
						if !jail {
							image = sandbox.ImageDir
						}
						script := tryFunc + "PROBE=" + image + "/probe\n" + tc.script
						got, stderr, err := shell(t, sb, sandbox.Spec{Root: root, Jail: jail}, script)
						if err != nil && tc.probe == "" {
							t.Fatalf("Run() = %v (stderr %q)", err, stderr)
						}
						if got != tc.want {
							t.Errorf("Run() stdout = %q, want %q (stderr %q)", got, tc.want, stderr)
						}
					})
				}
			})
		}
	})
}

// probesOnHost runs every probe of hostileCases on the host and reports
// which work there. None changes anything on the host.
func probesOnHost(t *testing.T, probe string) map[string]bool {
	ok := map[string]bool{}
	for _, tc := range hostileCases() {
		if tc.probe == "" {
			continue
		}
		out, err := exec.Command(probe, tc.probe).CombinedOutput()
		ok[tc.probe] = err == nil
		if err != nil {
			t.Logf("probe %s on the host: %v: %s", tc.probe, err, out)
		}
	}
	return ok
}

// TestForkBombBounded starts far more processes than the sandbox's pids
// limit and counts how many the sandbox sees: never more than the limit.
// Afterwards neither the processes nor the cgroup remain.
func TestForkBombBounded(t *testing.T) {
	const limit = 48 // no other test uses it: see cgroupsLimitedTo
	forEachBackend(t, func(t *testing.T, sb sandbox.Sandbox) {
		root := testutil.BusyboxRoot(t, false)
		// The fork failures end the subshell; counting needs no fork.
		script := `( i=0; while [ $i -lt 300 ]; do sleep 4242 & i=$((i+1)); done ) 2>/dev/null
n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo $n`
		got, stderr, err := shell(t, sb, sandbox.Spec{Root: root, Jail: true, PidsLimit: limit}, script)
		if err != nil {
			t.Fatalf("Run() = %v (stderr %q)", err, stderr)
		}
		n, err := strconv.Atoi(strings.TrimSpace(got))
		if err != nil {
			t.Fatalf("Run() stdout = %q, want a number", got)
		}
		if n > limit || n < limit/2 {
			t.Errorf("the sandbox had %d processes, want at most the limit %d (and near it)", n, limit)
		}
		if pids := testutil.ProcessesMatching(t, "sleep 4242"); len(pids) > 0 {
			t.Errorf("processes outlived Run: %v", pids)
		}
		if left := cgroupsLimitedTo(t, limit); len(left) > 0 {
			t.Errorf("cgroups left behind: %v", left)
		}
	})
}

// cgroupsLimitedTo lists the pids cgroups (v1 hierarchy or unified) whose
// pids.max is limit: a limit no other test uses tells a test's own
// sandboxes from those of tests running at the same time.
func cgroupsLimitedTo(t *testing.T, limit int) []string {
	t.Helper()
	var out []string
	for _, pattern := range []string{"/sys/fs/cgroup/pids/*/pids.max", "/sys/fs/cgroup/pids/*/*/pids.max", "/sys/fs/cgroup/*/pids.max"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range m {
			if b, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(limit) {
				out = append(out, filepath.Dir(f))
			}
		}
	}
	return out
}

// TestUmask runs the sandbox from a process with umask 027: what a script
// creates in the image must still get the usual modes (644, 755).
func TestUmask(t *testing.T) {
	forEachBackend(t, func(t *testing.T, sb sandbox.Sandbox) {
		for _, jail := range []bool{true, false} {
			t.Run(fmt.Sprintf("jail=%v", jail), func(t *testing.T) {
				root := testutil.BusyboxRoot(t, false)
				image := ""
				if !jail {
					image = sandbox.ImageDir
				}
				old := syscall.Umask(0o027)
				defer syscall.Umask(old)
				script := fmt.Sprintf("echo compute > %[1]s/etc/hostname && mkdir %[1]s/etc/d && umask", image)
				got, stderr, err := shell(t, sb, sandbox.Spec{Root: root, Jail: jail}, script)
				if err != nil {
					t.Fatalf("Run() = %v (stderr %q)", err, stderr)
				}
				if got != "0022\n" {
					t.Errorf("umask in the sandbox = %q, want 0022", got)
				}
				for name, want := range map[string]os.FileMode{"etc/hostname": 0o644, "etc/d": os.ModeDir | 0o755} {
					fi, err := os.Stat(filepath.Join(root, name))
					if err != nil {
						t.Fatal(err)
					}
					if fi.Mode() != want {
						t.Errorf("%s mode = %v, want %v", name, fi.Mode(), want)
					}
				}
			})
		}
	})
}

// TestConfinedInstalls does what installing packages does, confined: chown,
// set-id bits, a new user (host useradd --root, which chroots) and dpkg -i
// of a package whose maintainer script chowns a file.
func TestConfinedInstalls(t *testing.T) {
	deb := buildDeb(t)
	forEachBackend(t, func(t *testing.T, sb sandbox.Sandbox) {
		t.Run("jailed chown and set-id", func(t *testing.T) {
			root := testutil.BusyboxRoot(t, false)
			script := `echo x > /etc/x && chown 1234:1234 /etc/x && chmod 6755 /etc/x && stat -c '%u %g %a' /etc/x`
			got, stderr, err := shell(t, sb, sandbox.Spec{Root: root, Jail: true}, script)
			if err != nil || got != "1234 1234 6755\n" {
				t.Errorf("Run() = %q, %v; want %q (stderr %q)", got, err, "1234 1234 6755\n", stderr)
			}
		})
		t.Run("useradd and dpkg -i", func(t *testing.T) {
			testutil.RequireTool(t, "useradd")
			root := testutil.BusyboxRoot(t, false)
			for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"} {
				if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for name, content := range map[string]string{"etc/shadow": "root:*:19000:0:99999:7:::\n", "etc/gshadow": "root:*::\n", "var/lib/dpkg/status": ""} {
				if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o640); err != nil {
					t.Fatal(err)
				}
			}
			testutil.CopyExecutable(t, deb, filepath.Join(root, "tmp/probe.deb"))
			script := `set -e
useradd --root /mnt/image -u 1500 -U -M -s /bin/sh alice
dpkg --root=/mnt/image --force-not-root --force-script-chrootless --log=/dev/null -i /mnt/image/tmp/probe.deb >/dev/null
stat -c '%u %g %a' /mnt/image/opt/imsbuild-probe`
			got, stderr, err := shell(t, sb, sandbox.Spec{Root: root}, script)
			if err != nil || got != "1500 1500 4750\n" {
				t.Errorf("Run() = %q, %v; want %q (stderr %q)", got, err, "1500 1500 4750\n", stderr)
			}
		})
	})
}

// buildDeb builds a package with one file that its postinst gives to uid
// 1500 with mode 4750.
func buildDeb(t *testing.T) string {
	t.Helper()
	dpkgDeb := testutil.RequireTool(t, "dpkg-deb")
	dir := t.TempDir()
	files := map[string]string{
		"DEBIAN/control":     "Package: imsbuild-probe\nVersion: 1.0\nArchitecture: all\nMaintainer: imsbuild <imsbuild@example.com>\nDescription: test\n",
		"DEBIAN/postinst":    "#!/bin/sh\nset -e\nchown 1500:1500 \"$DPKG_ROOT/opt/imsbuild-probe\"\nchmod 4750 \"$DPKG_ROOT/opt/imsbuild-probe\"\n",
		"opt/imsbuild-probe": "probe\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, "pkg", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "probe.deb")
	if b, err := exec.Command(dpkgDeb, "--root-owner-group", "--build", filepath.Join(dir, "pkg"), out).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, b)
	}
	return out
}

// TestTmpSize fills /tmp beyond Spec.TmpSize: the write fails for want of
// space, and the default size is DefaultTmpSize.
func TestTmpSize(t *testing.T) {
	forEachBackend(t, func(t *testing.T, sb sandbox.Sandbox) {
		tests := []struct {
			name   string
			size   int64
			script string
			want   string
		}{
			{name: "limit", size: 1 << 20, script: `dd if=/dev/zero of=/tmp/fill bs=64k count=32 2>/dev/null && echo fitted || echo full`, want: "full\n"},
			{name: "default", script: `df -k /tmp | awk 'NR==2 { print $2 }'`, want: strconv.Itoa(sandbox.DefaultTmpSize/1024) + "\n"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				root := testutil.BusyboxRoot(t, false)
				got, stderr, err := shell(t, sb, sandbox.Spec{Root: root, Jail: true, TmpSize: tc.size}, tc.script)
				if err != nil || got != tc.want {
					t.Errorf("Run() = %q, %v; want %q (stderr %q)", got, err, tc.want, stderr)
				}
			})
		}
	})
}
