package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// TestNothingOutlivesRun starts a background process (marked by a unique
// argument) in the sandbox and checks that after Run returns, whatever the
// outcome, no process or cgroup of the sandbox remains and the host's mount
// table is as before.
func TestNothingOutlivesRun(t *testing.T) {
	forEachBackend(t, func(t *testing.T, sb sandbox.Sandbox) {
		tests := []struct {
			name    string
			jail    bool
			script  string
			timeout time.Duration
			cancel  bool
			wantErr func(error) bool
		}{
			{name: "success", jail: true, script: "echo started", wantErr: isNil},
			{name: "failure", jail: true, script: "exit 7", wantErr: isExit(7)},
			{name: "timeout", jail: true, script: "sleep 1000", timeout: 300 * time.Millisecond, wantErr: is(sandbox.ErrTimeout)},
			{name: "cancel", jail: true, script: "sleep 1000", cancel: true, wantErr: is(context.Canceled)},
			{name: "non-jailed success", script: "echo started", wantErr: isNil},
			{name: "non-jailed cancel", script: "sleep 1000", cancel: true, wantErr: is(context.Canceled)},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				root := bareRoot(t)
				before := tree(t, root)
				mounts := mountinfo(t)
				marker := fmt.Sprintf("imsbuild-marker-%d", time.Now().UnixNano())
				ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
				defer cancel()
				s := sandbox.Spec{
					Root: root, Jail: tc.jail, Timeout: tc.timeout,
					// The background shell keeps the marker in its command line.
					Args:      []string{"/bin/sh", "-c", "sh -c 'sleep 1000; :' " + marker + " & " + tc.script},
					Env:       []string{"PATH=/bin:/usr/bin"},
					PidsLimit: leakPidsLimit,
				}
				if tc.cancel {
					go func() {
						waitFor(t, ctx, marker)
						cancel()
					}()
				}
				err := sb.Run(ctx, s)
				if !tc.wantErr(err) {
					t.Errorf("Run() = %v", err)
				}
				if pids := procsWith(t, marker); len(pids) > 0 {
					t.Errorf("processes %v outlived Run", pids)
				}
				if got := mountinfo(t); got != mounts {
					t.Errorf("mount table changed:\nbefore:\n%s\nafter:\n%s", mounts, got)
				}
				if d := diff(before, tree(t, root)); d != "" {
					t.Errorf("image root changed:\n%s", d)
				}
				if left := cgroupsLimitedTo(t, leakPidsLimit); len(left) > 0 {
					t.Errorf("cgroups left behind: %v", left)
				}
			})
		}
	})
}

// leakPidsLimit is the pids limit of TestNothingOutlivesRun's sandboxes,
// which no other test uses: see cgroupsLimitedTo.
const leakPidsLimit = 1023

// waitFor polls until a process with marker in its command line runs, other
// than the one (bwrap) that has the whole script in its arguments.
func waitFor(t *testing.T, ctx context.Context, marker string) {
	for ctx.Err() == nil {
		for _, pid := range procsWith(t, marker) {
			if b := cmdline(pid); strings.HasPrefix(b, "sh\x00-c\x00sleep 1000; :") {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func isNil(err error) bool { return err == nil }

func is(target error) func(error) bool {
	return func(err error) bool { return errors.Is(err, target) }
}

func isExit(code int) func(error) bool {
	return func(err error) bool {
		var ee *sandbox.ExitError
		return errors.As(err, &ee) && ee.Code == code
	}
}

func TestNetwork(t *testing.T) {
	forEachBackend(t, func(t *testing.T, sb sandbox.Sandbox) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_, _ = c.Write([]byte("pong\n"))
				_ = c.Close()
			}
		}()
		port := ln.Addr().(*net.TCPAddr).Port
		tests := []struct {
			network bool
			want    string
		}{
			{network: false, want: "unreachable\n"},
			{network: true, want: "pong\n"},
		}
		for _, tc := range tests {
			t.Run(fmt.Sprintf("network=%v", tc.network), func(t *testing.T) {
				root := testutil.BusyboxRoot(t, false)
				script := fmt.Sprintf("nc -w 5 127.0.0.1 %d </dev/null || echo unreachable", port)
				got, stderr, err := shell(t, sb, sandbox.Spec{Root: root, Jail: true, Network: tc.network}, script)
				if err != nil {
					t.Fatalf("Run() = %v (stderr %q)", err, stderr)
				}
				if got != tc.want {
					t.Errorf("Run() stdout = %q, want %q (stderr %q)", got, tc.want, stderr)
				}
			})
		}
	})
}
