package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildDir writes src as the build file of a new directory.
func buildDir(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "build.ims.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Usage and configuration mistakes exit 2 with a message, not 1 (and -j 0
// was accepted silently).
func TestUsageExitCodes(t *testing.T) {
	good := buildDir(t, "locals { x = 1 }\n")
	syntax := buildDir(t, "image \"x\" {\n  import = \n}\n")
	deep := buildDir(t, "locals {\n  x = "+strings.Repeat("(", 100_000)+"1"+strings.Repeat(")", 100_000)+"\n}\n")
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		args     []string
		contains string
	}{
		{"-j 0", []string{"validate", "-j", "0", good}, "-j 0: the number of parallel steps must be at least 1"},
		{"-j -5", []string{"build", "-j", "-5", good}, "-j -5: the number of parallel steps must be at least 1"},
		{"fmt syntax error", []string{"fmt", syntax}, "build.ims.hcl:2:12: error: Invalid expression"},
		{"fmt --check syntax error", []string{"fmt", "--check", syntax}, "build.ims.hcl:2:12: error: Invalid expression"},
		{"fmt deep nesting", []string{"fmt", deep}, "build.ims.hcl:2:262: error: Nesting too deep"},
		{"validate deep nesting", []string{"validate", deep}, "build.ims.hcl:2:262: error: Nesting too deep"},
		{"fmt missing dir", []string{"fmt", filepath.Join(good, "nope") + "/"}, "no such file or directory"},
		{"cache-dir is a file", []string{"plan", "--cache-dir", file, good}, "cache directory " + file + ": not a directory"},
		{"cache-dir under a file", []string{"cache", "ls", "--cache-dir", filepath.Join(file, "sub")}, "not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := imsbuild(t, t.TempDir(), tc.args...)
			if r.code != exitUsage || !strings.Contains(r.stderr, tc.contains) {
				t.Fatalf("imsbuild %v = exit %d, want 2 with %q\nstdout: %s\nstderr: %s", tc.args, r.code, tc.contains, r.stdout, r.stderr)
			}
		})
	}
	if got, _ := os.ReadFile(filepath.Join(syntax, "build.ims.hcl")); string(got) != "image \"x\" {\n  import = \n}\n" {
		t.Errorf("fmt changed a file with a syntax error: %q", got)
	}
}

// SIGINT and SIGTERM while the build files load (here: hashing a 1 TiB
// sparse file) exit 130 at once; they were ignored until loading ended.
func TestSignalDuringLoadExits130(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			big := filepath.Join(t.TempDir(), "big")
			f, err := os.Create(big)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Truncate(1 << 40); err != nil {
				t.Fatal(err)
			}
			f.Close()
			dir := buildDir(t, fmt.Sprintf("locals {\n  x = filesha256(%q)\n}\n", big))
			cmd := exec.Command(binary, "validate", dir)
			var out strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill() })
			waitOpen(t, cmd.Process.Pid, big)
			sent := time.Now()
			cmd.Process.Signal(sig)
			err = cmd.Wait()
			took := time.Since(sent)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != exitCancelled {
				t.Fatalf("exit = %v, want 130\n%s", err, out.String())
			}
			if took > 5*time.Second {
				t.Errorf("exit took %s after the signal, want < 5s", took)
			}
			if !strings.Contains(out.String(), "imsbuild: cancelled") || strings.Contains(out.String(), "error:") {
				t.Errorf("output:\n%s\nwant only imsbuild: cancelled", out.String())
			}
		})
	}
}

// waitOpen polls until process pid has path open.
func waitOpen(t *testing.T, pid int, path string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
		for _, fd := range fds {
			if target, _ := os.Readlink(fd); target == path {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d never opened %s", pid, path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
