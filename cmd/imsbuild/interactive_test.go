package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/imsbuild/imsbuild/internal/testutil"
)

// TestInteractiveFlag drives `build --interactive` as a user would: read the
// waiting event, ssh in, change the image, touch /tmp/complete.
func TestInteractiveFlag(t *testing.T) {
	dir := example(t)
	testutil.RequireTool(t, "ssh")
	key, _ := testutil.SSHKey(t)
	cmd := exec.CommandContext(t.Context(), binary, "build", "--json", "--interactive", "image.compute", "--ssh-public-key", key+".pub", "--ssh-timeout", "60s", ".")
	cmd.Dir = dir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var sshOut []byte
	for sc.Scan() {
		var ev struct {
			Step, Status string
			SSH          *struct {
				Host         string
				Port         int
				User         string
				CompleteFile string `json:"complete_file"`
			}
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("event %q: %v", sc.Text(), err)
		}
		if ev.Status != "waiting" {
			continue
		}
		if ev.Step != "image.compute" || ev.SSH == nil || ev.SSH.CompleteFile != "/tmp/complete" {
			t.Fatalf("waiting event = %s", sc.Text())
		}
		sshOut, err = exec.Command("ssh", "-i", key, "-p", strconv.Itoa(ev.SSH.Port), "-o", "StrictHostKeyChecking=no",
			"-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", ev.SSH.User+"@"+ev.SSH.Host,
			"cat /etc/imsbuild/role; touch /tmp/complete").CombinedOutput()
		// Touching complete ends the environment once this session has
		// ended: ssh gets the exit status.
		if err != nil {
			t.Fatalf("ssh: %v\n%s", err, sshOut)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("build --interactive: %v", err)
	}
	if string(sshOut) == "" || !strings.Contains(string(sshOut), "customized by imsbuild") {
		t.Fatalf("ssh output %q, want the customized image's /etc/imsbuild/role", sshOut)
	}
}
