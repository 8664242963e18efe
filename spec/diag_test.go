package spec

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteDiagnostics(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"build.ims.hcl": "image \"compute\" {\n  from = image.bse\n}\nimage \"base\" {\n  import = \"x\"\n}\n"})
	cfg, diags := Load(dir, Options{})
	if len(diags) != 1 {
		t.Fatalf("Load() = %v, want one diagnostic", diags)
	}
	var b strings.Builder
	if err := WriteDiagnostics(&b, cfg.Files, diags, false); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	name := filepath.Join(dir, "build.ims.hcl")
	for _, want := range []string{
		name + ":2:10: error: Reference to undeclared image\n",
		"   2:   from = image.bse\n",
		`Did you mean "base"?`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("WriteDiagnostics() =\n%s\nwant it to contain %q", got, want)
		}
	}
	if strings.Contains(got, "Error: ") {
		t.Errorf("WriteDiagnostics() =\n%s\nwant no second summary line", got)
	}
}
