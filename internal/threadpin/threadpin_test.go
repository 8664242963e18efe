package threadpin

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// endLockedThreads makes Go end n OS threads: each goroutine exits while
// locked to its thread, as the sandbox's umask threads do.
func endLockedThreads(n int) {
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
		}()
	}
	wg.Wait()
}

// A child with a parent-death signal survives while Go ends threads around
// it, when it was started by Start. The control case shows the hazard is
// real: children started from ordinary threads die as those threads end.
func TestChildSurvivesThreadExits(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 40 processes")
	}
	start := func(pinned bool) (*exec.Cmd, func()) {
		cmd := exec.Command("sleep", "30")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if pinned {
			release, err := Start(cmd)
			if err != nil {
				t.Fatal(err)
			}
			return cmd, release
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, func() {}
	}
	killed := func(pinned bool) int {
		var cmds []*exec.Cmd
		var releases []func()
		for range 20 {
			// Spread the starts over the runtime's threads.
			c, r := start(pinned)
			cmds, releases = append(cmds, c), append(releases, r)
			endLockedThreads(4)
		}
		endLockedThreads(64)
		time.Sleep(200 * time.Millisecond) // let a parent-death signal land
		n := 0
		for i, c := range cmds {
			if err := c.Process.Signal(syscall.Signal(0)); err != nil {
				n++
			} else if ws := waitNoHang(c); ws != nil && ws.Signaled() {
				n++
			}
			_ = c.Process.Kill()
			_ = c.Wait()
			releases[i]()
		}
		return n
	}
	if n := killed(true); n != 0 {
		t.Errorf("%d of 20 pinned children were killed when threads ended, want 0", n)
	}
	if n := killed(false); n == 0 {
		t.Log("control: no unpinned child was killed this time (the hazard depends on scheduling)")
	} else {
		t.Logf("control: %d of 20 unpinned children were killed", n)
	}
}

// waitNoHang reports the status of c's process if it has ended.
func waitNoHang(c *exec.Cmd) *syscall.WaitStatus {
	var ws syscall.WaitStatus
	pid, err := syscall.Wait4(c.Process.Pid, &ws, syscall.WNOHANG, nil)
	if err != nil || pid == 0 {
		return nil
	}
	return &ws
}

func TestRun(t *testing.T) {
	if err := Run(exec.Command("true")); err != nil {
		t.Errorf("Run(true) = %v", err)
	}
	if err := Run(exec.Command("false")); err == nil {
		t.Error("Run(false) = nil, want an exit error")
	}
	if err := Run(exec.Command("/nonexistent/cmd")); err == nil {
		t.Error("Run(/nonexistent/cmd) = nil, want an error")
	}
}
