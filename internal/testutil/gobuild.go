package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BuildStatic builds the Go program in dir (relative to the test's package)
// as a static binary, for copying into an image root, and returns its path.
func BuildStatic(t testing.TB, dir string) string {
	t.Helper()
	gobin := RequireTool(t, "go")
	out := filepath.Join(t.TempDir(), filepath.Base(dir))
	cmd := exec.Command(gobin, "build", "-o", out, dir)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", dir, err, b)
	}
	return out
}

// CopyExecutable copies the file src to dst with mode 0755.
func CopyExecutable(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// BuildStaticFor builds the Go program in dir like BuildStatic, for the
// Go architecture goarch (a binary of another machine, run emulated).
func BuildStaticFor(t testing.TB, dir, goarch string) string {
	t.Helper()
	gobin := RequireTool(t, "go")
	out := filepath.Join(t.TempDir(), filepath.Base(dir)+"-"+goarch)
	cmd := exec.Command(gobin, "build", "-o", out, dir)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s for %s: %v\n%s", dir, goarch, err, b)
	}
	return out
}
