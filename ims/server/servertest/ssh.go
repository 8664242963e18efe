package servertest

import (
	"bytes"
	"fmt"
	"os/exec"
	"strconv"
	"testing"
)

// SSH runs command as root on a job's ssh container (its customer_access
// host and port) with the private key file key, as a user would: batch
// mode, no host key checks. The error carries ssh's stderr.
func SSH(t testing.TB, key, host string, port int, command string) (string, error) {
	cmd := exec.CommandContext(t.Context(), "ssh", "-i", key, "-p", strconv.Itoa(port),
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
		"-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "root@"+host, command)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		err = fmt.Errorf("ssh %s:%d: %w: %s", host, port, err, stderr.String())
	}
	return string(out), err
}
