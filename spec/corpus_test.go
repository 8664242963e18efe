package spec

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2"
	"github.com/rogpeppe/go-internal/txtar"
)

var update = flag.Bool("update", false, "rewrite the want files of testdata/bad")

// corpusCase is one testdata/bad archive written to a directory.
type corpusCase struct {
	dir  string
	opts Options
}

// setupArchive writes the files of ar into a temp dir. *.imsvars.hcl files
// become VarFiles; an "args" file holds "-var k=v" and "env K=V" lines.
func setupArchive(t testing.TB, ar *txtar.Archive) corpusCase {
	t.Helper()
	c := corpusCase{dir: t.TempDir()}
	for _, f := range ar.Files {
		switch {
		case f.Name == "want":
			continue
		case f.Name == "args":
			for _, line := range strings.Split(string(f.Data), "\n") {
				if v, ok := strings.CutPrefix(line, "-var "); ok {
					c.opts.Vars = append(c.opts.Vars, v)
				} else if v, ok := strings.CutPrefix(line, "env "); ok {
					c.opts.Environ = append(c.opts.Environ, v)
				}
			}
			continue
		case strings.HasSuffix(f.Name, ".imsvars.hcl"):
			c.opts.VarFiles = append(c.opts.VarFiles, filepath.Join(c.dir, f.Name))
		}
		p := filepath.Join(c.dir, f.Name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// diagLines renders diags as "file:line:col: Summary", file relative to dir.
func diagLines(t testing.TB, dir string, diags hcl.Diagnostics) []string {
	t.Helper()
	var lines []string
	for _, d := range diags {
		if d.Subject == nil {
			t.Errorf("diagnostic without Subject: %s: %s", d.Summary, d.Detail)
			lines = append(lines, "?: "+d.Summary)
			continue
		}
		name := strings.TrimPrefix(d.Subject.Filename, dir+string(filepath.Separator))
		if name == dir {
			name = "."
		}
		lines = append(lines, fmt.Sprintf("%s:%d:%d: %s", name, d.Subject.Start.Line, d.Subject.Start.Column, d.Summary))
	}
	return lines
}

func TestBadCorpus(t *testing.T) {
	paths, err := filepath.Glob("../testdata/bad/*.txtar")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 45 {
		t.Errorf("testdata/bad has %d archives, want at least 45", len(paths))
	}
	for _, path := range paths {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txtar"), func(t *testing.T) {
			ar, err := txtar.ParseFile(path)
			if err != nil {
				t.Fatal(err)
			}
			c := setupArchive(t, ar)
			cfg, diags := Load(c.dir, c.opts)
			if cfg == nil || cfg.Files == nil {
				t.Fatalf("Load() = %v, want a Config with Files", cfg)
			}
			got := diagLines(t, c.dir, diags)
			if !diags.HasErrors() {
				t.Errorf("Load() has no errors")
			}
			if err := WriteDiagnostics(new(strings.Builder), cfg.Files, diags, true); err != nil {
				t.Errorf("WriteDiagnostics() = %v", err)
			}
			if *update {
				writeWant(t, path, ar, got)
				return
			}
			var want []string
			for _, f := range ar.Files {
				if f.Name == "want" {
					want = strings.Split(strings.TrimSpace(string(f.Data)), "\n")
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Load() diagnostics mismatch (-want +got):\n%s\ndetails:\n%v", diff, diags)
			}
		})
	}
}

func writeWant(t *testing.T, path string, ar *txtar.Archive, got []string) {
	data := []byte(strings.Join(got, "\n") + "\n")
	found := false
	for i := range ar.Files {
		if ar.Files[i].Name == "want" {
			ar.Files[i].Data, found = data, true
		}
	}
	if !found {
		ar.Files = append(ar.Files, txtar.File{Name: "want", Data: data})
	}
	if err := os.WriteFile(path, txtar.Format(ar), 0o644); err != nil {
		t.Fatal(err)
	}
}
