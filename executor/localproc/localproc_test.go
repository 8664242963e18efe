package localproc

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/executor"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// TestRunEnvironmentAndExit: the step sees Env and SecretEnv and none of
// this process's environment but PATH, HOME and TMPDIR; its output reaches Log; a non-zero
// exit is an error naming the step.
func TestRunEnvironmentAndExit(t *testing.T) {
	t.Setenv("LOCALPROC_TEST_OURS", "leaked")
	x, err := New("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	var log testutil.SyncBuffer
	err = x.Run(t.Context(), executor.Step{
		Step:      "image.a",
		Args:      []string{"-c", `echo "plain=$PLAIN secret=$SECRET ours=$LOCALPROC_TEST_OURS"; echo to-stderr >&2; exit 3`},
		Env:       map[string]string{"PLAIN": "p1"},
		SecretEnv: map[string]string{"SECRET": "s1"},
		Log:       &log,
	})
	if err == nil || !strings.Contains(err.Error(), "image.a") || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("Run() = %v, want the step's exit status 3", err)
	}
	if got := log.String(); !strings.Contains(got, "plain=p1 secret=s1 ours=\n") || !strings.Contains(got, "to-stderr") {
		t.Errorf("log = %q, want Env and SecretEnv, not our environment, and stderr", got)
	}
}

// TestRunMarkersNotLogged: marker lines on a step's output are for
// executors, not people: they never reach Log, the rest does, in order.
func TestRunMarkersNotLogged(t *testing.T) {
	x, err := New("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	var log testutil.SyncBuffer
	marker := strings.TrimSuffix(executor.FormatStoredMarker(strings.Repeat("ab", 32)), "\n")
	if err := x.Run(t.Context(), executor.Step{
		Step: "image.a",
		Args: []string{"-c", `echo one; echo "$M"; printf two`},
		Env:  map[string]string{"M": marker},
		Log:  &log,
	}); err != nil {
		t.Fatal(err)
	}
	if got := log.String(); got != "one\ntwo" {
		t.Errorf("log = %q, want %q", got, "one\ntwo")
	}
}

// TestRunCancelKillsGroup: cancelling ctx sends the step SIGTERM, and
// kills it and what it started (its process group) when it ignores it;
// Run returns the cancellation.
func TestRunCancelKillsGroup(t *testing.T) {
	for _, tc := range []struct{ name, script, want string }{
		{"terminates", `trap 'echo got-term; exit 0' TERM; sleep 300 & echo child=$!; wait`, "got-term"},
		{"ignores SIGTERM", `trap '' TERM; sleep 300 & echo child=$!; wait`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) { testCancel(t, tc.script, tc.want) })
	}
}

func testCancel(t *testing.T, script, want string) {
	x, err := New("/bin/sh", WithGrace(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var log testutil.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- x.Run(ctx, executor.Step{Step: "image.a", Args: []string{"-c", script}, Log: &log})
	}()
	var pid int
	for deadline := time.Now().Add(10 * time.Second); pid == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no child pid in the log %q", log.String())
		}
		if _, rest, ok := strings.Cut(log.String(), "child="); ok && strings.Contains(rest, "\n") {
			rest, _, _ = strings.Cut(rest, "\n")
			pid, _ = strconv.Atoi(strings.TrimSpace(rest))
		}
	}
	cancel()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "context canceled") {
			t.Errorf("Run() = %v, want the cancellation", err)
		}
		if !strings.Contains(log.String(), want) {
			t.Errorf("log = %q, want %q", log.String(), want)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	// The killed grandchild is reaped by init; poll until it is gone.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			break
		} else if b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); strings.Contains(string(b), ") Z ") {
			break // a zombie: killed, not yet reaped
		}
		if time.Now().After(deadline) {
			t.Fatalf("the step's child %d survived the cancellation", pid)
		}
	}
}
