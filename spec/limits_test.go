package spec

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// writeBuild writes src as the only build file of a new directory.
func writeBuild(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "build.ims.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// manyLocals is a build file of about 10 MB with n locals: numbers that
// refer to two earlier ones, and padded strings.
func manyLocals(n int) string {
	var b strings.Builder
	b.WriteString("locals {\n")
	pad := strings.Repeat("x", 150)
	for i := range n {
		switch {
		case i%2 == 0:
			fmt.Fprintf(&b, "  l%06d = \"%s\"\n", i, pad)
		case i == 1:
			fmt.Fprintf(&b, "  l%06d = 0\n", i)
		default: // a chain through every odd local, and a fan-in from the even ones
			fmt.Fprintf(&b, "  l%06d = local.l%06d + length([local.l%06d]) # %s\n", i, i-2, i/4*2, pad[:80])
		}
	}
	b.WriteString("}\n")
	return b.String()
}

// TestLoadManyLocals: evaluating locals is linear, so a 10 MB build file
// with 88k locals validates in seconds (it took minutes when each local was
// evaluated with an object of all locals evaluated before it).
func TestLoadManyLocals(t *testing.T) {
	src := manyLocals(88_000)
	if len(src) < 10<<20 {
		t.Fatalf("generated %d bytes, want ≥ 10 MiB", len(src))
	}
	dir := writeBuild(t, src)
	start := time.Now()
	cfg, diags := Load(dir, Options{})
	took := time.Since(start)
	t.Logf("Load of %d bytes, 88000 locals: %s", len(src), took)
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			t.Errorf("diagnostic: %s", d.Error())
		}
	}
	if cfg.Files == nil {
		t.Fatal("Load() returned no Files")
	}
	if took > 15*time.Second {
		t.Errorf("Load took %s, want < 15s", took)
	}
}
