package testutil

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Cosign runs the real cosign CLI offline in dir, with password for its
// keys, and returns its combined output and whether it exited 0. A missing
// cosign skips the test (or fails it, as RequireTool says).
func Cosign(ctx context.Context, t testing.TB, dir, password string, args ...string) (string, bool) {
	t.Helper()
	bin := RequireTool(t, "cosign")
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	// No state from the host: a private HOME and TUF root. cosign 2.x still
	// tries to fetch its TUF root (sigstore/cosign#4454); that fails here,
	// with a warning, and a key-based verification with
	// --insecure-ignore-tlog goes on without it.
	cmd.Env = []string{"HOME=" + dir, "TUF_ROOT=" + filepath.Join(dir, "tuf"), "COSIGN_PASSWORD=" + password, "PATH=/usr/bin:/bin"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("cosign %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), err == nil
}
