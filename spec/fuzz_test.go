package spec

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/txtar"
)

// FuzzLoad feeds one build file through Load: it must not panic, and every
// error must carry a Subject.
func FuzzLoad(f *testing.F) {
	paths, _ := filepath.Glob("../testdata/bad/*.txtar")
	for _, p := range paths {
		ar, err := txtar.ParseFile(p)
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range ar.Files {
			if file.Name == "build.ims.hcl" {
				f.Add(file.Data)
			}
		}
	}
	good, err := os.ReadFile("../testdata/good/full/build.ims.hcl")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`variable "x" {
  sensitive = true
  validation {
    condition     = var.x != "2" && length([for c in split("", var.x) : c]) > 0
    error_message = "bad ${var.x}"
  }
}
locals {
  m = { a = var.x, b = [var.x, upper(var.x)] }
  s = var.x == "1" ? base64encode(var.x) : var.x
}
image "a" {
  import            = "r"
  kernel_parameters = "${local.s}${local.m.b[1] + 1}"
  squashfs { level = var.x }
  customize {
    inline = join(" ", local.m.b)
    env    = merge(local.m, { y = var.x })
  }
}
`))
	// Deep nesting overflowed the parser's stack before the nesting limit.
	f.Add([]byte("locals {\n  x = " + strings.Repeat("(", 100_000) + "1" + strings.Repeat(")", 100_000) + "\n}\n"))
	f.Add([]byte("locals {\n  x = " + strings.Repeat("!-", 300) + "1\n}\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "build.ims.hcl"), src, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, diags := Load(dir, Options{Vars: []string{"x=1"}, Environ: []string{"HOME=" + dir}})
		if cfg == nil || cfg.Files == nil {
			t.Fatal("Load() returned no Config or no Files")
		}
		for _, d := range diags {
			if d.Subject == nil {
				t.Errorf("diagnostic without Subject: %s: %s", d.Summary, d.Detail)
			}
		}
		if err := WriteDiagnostics(io.Discard, cfg.Files, diags, false); err != nil {
			t.Fatal(err)
		}
	})
}
