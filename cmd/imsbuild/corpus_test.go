package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/txtar"
)

// TestValidateBadCorpus runs `imsbuild validate` on every invalid build file
// of testdata/bad: exit 2 and each expected diagnostic printed as
// file:line:col: error: Summary.
func TestValidateBadCorpus(t *testing.T) {
	archives, err := filepath.Glob("../../testdata/bad/*.txtar")
	if err != nil || len(archives) < 40 {
		t.Fatalf("bad corpus has %d files (%v), want at least 40", len(archives), err)
	}
	for _, path := range archives {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txtar"), func(t *testing.T) {
			ar, err := txtar.ParseFile(path)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			args := []string{"validate"}
			var env, want []string
			for _, f := range ar.Files {
				switch {
				case f.Name == "want":
					want = strings.Split(strings.TrimSpace(string(f.Data)), "\n")
					continue
				case f.Name == "args":
					for _, line := range strings.Split(string(f.Data), "\n") {
						if v, ok := strings.CutPrefix(line, "-var "); ok {
							args = append(args, "-var", v)
						} else if v, ok := strings.CutPrefix(line, "env "); ok {
							env = append(env, v)
						}
					}
					continue
				case strings.HasSuffix(f.Name, ".imsvars.hcl"):
					args = append(args, "-var-file", filepath.Join(dir, f.Name))
				}
				p := filepath.Join(dir, f.Name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, f.Data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			r := imsbuildEnv(t, dir, env, append(args, ".")...)
			if r.code != 2 {
				t.Fatalf("validate exit %d, want 2\n%s", r.code, r.stderr)
			}
			for _, w := range want {
				pos, summary, _ := strings.Cut(w, ": ")
				if strings.HasPrefix(pos, "-var") || strings.HasPrefix(pos, "env ") {
					pos = strings.SplitN(pos, ":", 2)[0]
				}
				if !strings.Contains(r.stderr, pos) || !strings.Contains(r.stderr, "error: "+summary) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
		})
	}
}
