package spec

import (
	"os"
	"path/filepath"
	"testing"
)

// TestSigning: the signing block's key is a path relative to the build
// directory, with the range of its argument for the CLI's errors about the
// file; the variables come with their values, sensitive ones marked.
func TestSigning(t *testing.T) {
	dir := t.TempDir()
	src := `variable "key_dir" {
  default = "keys"
}
variable "token" {
  default   = "s3cr3t-token"
  sensitive = true
}
imsbuild {
  signing {
    key = "${var.key_dir}/cosign.key"
  }
}
image "a" {
  name   = "a"
  import = "./root"
}
`
	if err := os.WriteFile(filepath.Join(dir, "build.ims.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, diags := Load(dir, Options{})
	if diags.HasErrors() {
		t.Fatalf("Load() = %v", diags)
	}
	s := cfg.Settings.Signing
	if want := filepath.Join(dir, "keys/cosign.key"); s.Key != want {
		t.Errorf("Signing.Key = %q, want %q", s.Key, want)
	}
	if s.KeyRange.Start.Line != 10 || s.KeyRange.Start.Column != 11 {
		t.Errorf("Signing.KeyRange = %v, want line 10 column 11", s.KeyRange)
	}
	if v := cfg.Variables["token"]; !v.Sensitive || v.Value.AsString() != "s3cr3t-token" {
		t.Errorf("Variables[token] = %#v, want the value marked sensitive", v)
	}
	if v := cfg.Variables["key_dir"]; v.Sensitive || v.Value.AsString() != "keys" {
		t.Errorf("Variables[key_dir] = %#v, want keys", v)
	}
	if len(cfg.BuildFiles) != 1 || filepath.Base(cfg.BuildFiles[0]) != "build.ims.hcl" {
		t.Errorf("BuildFiles = %v, want build.ims.hcl", cfg.BuildFiles)
	}

	// Without a key the block is an error at the block.
	src = "imsbuild {\n  signing {\n  }\n}\nimage \"a\" {\n  name   = \"a\"\n  import = \"./root\"\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "build.ims.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, diags = Load(dir, Options{})
	if len(diags) != 1 || diags[0].Summary != "Missing required argument" || diags[0].Subject == nil || diags[0].Subject.Start.Line != 2 {
		t.Errorf("Load() of a signing block without key = %v, want one missing argument at line 2", diags)
	}
}
