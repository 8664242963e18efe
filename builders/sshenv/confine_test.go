package sshenv_test

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/imsbuild/imsbuild/builders/sshenv"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// TestHostileSession does from an SSH session what an audit did from a
// customize script, jailed and not: each must fail as it does in a script
// (see the sandbox package's TestHostileScript).
func TestHostileSession(t *testing.T) {
	probe := testutil.BuildStatic(t, "../sandbox/testdata/probe")
	tests := []struct {
		name, command, want string
	}{
		{name: "capabilities", command: `grep -E '^(CapPrm|CapEff|NoNewPrivs|Seccomp):' /proc/self/status`,
			want: "CapPrm:\t00000000a00405fb\nCapEff:\t00000000a00405fb\nNoNewPrivs:\t1\nSeccomp:\t2\n"},
		{name: "mount tmpfs", command: `mkdir -p /dev/shm/m && try mount -t tmpfs imsbuild-hostile /dev/shm/m`, want: "blocked\n"},
		{name: "remount root rw", command: `try mount -o remount,bind,rw /`, want: "blocked\n"},
		{name: "mknod", command: `try mknod /dev/shm/null c 1 3`, want: "blocked\n"},
		{name: "open_by_handle_at", command: `$PROBE open-by-handle`, want: "open-by-handle: operation not permitted\n"},
		{name: "fork bomb", command: `( i=0; while [ $i -lt 1100 ]; do sleep 4343 & i=$((i+1)); done ) 2>/dev/null
n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; [ $n -le 1024 ] && [ $n -ge 900 ] && echo bounded`, want: "bounded\n"},
	}
	for _, tg := range targets() {
		if tg.name == "fake" {
			continue
		}
		t.Run(tg.name, func(t *testing.T) {
			sb, root := tg.setup(t)
			testutil.CopyExecutable(t, probe, filepath.Join(root, "probe"))
			key := newClientKey(t)
			e := start(t, sshenv.Config{Sandbox: sb, Root: root, Jail: tg.jail, IMSLayout: tg.ims, IMSBuildLayout: tg.imsBuild, AuthorizedKeys: []string{key.authorized}})
			image := strings.TrimSuffix(tg.image, "/")
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					cmd := `try() { "$@" >/dev/null 2>&1; s=$?; case $s in 0) echo done;; 126|127) echo missing;; *) echo blocked;; esac; }
PROBE=` + image + "/probe\n" + tc.command
					want := tc.want
					if tg.jail && strings.HasSuffix(tg.name, "-overlay") && tc.name == "open_by_handle_at" {
						// The jail's / is an overlay, which gives no file
						// handles (nfs_export is off): the way out is shut
						// one call earlier.
						want = "open-by-handle: name_to_handle_at: operation not supported\n"
					}
					out, errOut, _ := e.run(t, key, cmd)
					if out != want {
						t.Errorf("ssh %s = %q, want %q (stderr %q)", tc.name, out, want, errOut)
					}
				})
			}
			if pids := testutil.ProcessesMatching(t, "sleep 4343"); len(pids) > 0 {
				t.Errorf("processes outlived the sessions: %v", pids)
			}
		})
	}
}

// TestOnlyRoot refuses a login as any user but root, even with the right key.
func TestOnlyRoot(t *testing.T) {
	key := newClientKey(t)
	e := start(t, sshenv.Config{AuthorizedKeys: []string{key.authorized}, Sandbox: hostSandbox{}, Root: t.TempDir()})
	bin := testutil.RequireTool(t, "ssh")
	for _, user := range []string{"alice", "root"} {
		args := append(e.sshArgs(key), "-p", strconv.Itoa(e.info.Port), user+"@"+e.info.Host, "echo in")
		out, err := exec.CommandContext(t.Context(), bin, args...).CombinedOutput()
		got := err == nil && string(out) == "in\n"
		if want := user == "root"; got != want {
			t.Errorf("ssh as %s: logged in %v (%v: %s), want %v", user, got, err, out, want)
		}
	}
}
