package spec

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const secret = "hunter2-s3cr3t"

// writeDiags loads dir and returns everything the CLI would print.
func writeDiags(t *testing.T, dir string, opts Options) (*Config, string) {
	t.Helper()
	cfg, diags := Load(dir, opts)
	var b strings.Builder
	if err := WriteDiagnostics(&b, cfg.Files, diags, false); err != nil {
		t.Fatal(err)
	}
	return cfg, b.String()
}

const sensitiveBase = `
variable "token" {
  type      = string
  sensitive = true
}
image "base" {
  import = "root"
}
`

func TestSensitiveDiagnostics(t *testing.T) {
	tests := []struct {
		name  string
		build string
		opts  Options
		vars  map[string]string // extra files
		want  []string
	}{{
		name:  "expression values",
		build: `image "c" {` + "\n  from = image.base\n  kernel_parameters = \"${var.token + 1}\"\n}\n",
		want:  []string{"var.token as " + Redacted, "Unsuitable value for left operand"},
	}, {
		name:  "derived values",
		build: "locals { b = base64encode(var.token) }\nimage \"c\" {\n  from = image.base\n  kernel_parameters = local.b + 1\n}\n",
		want:  []string{"local.b as " + Redacted},
	}, {
		name:  "a value in a message",
		build: "image \"c\" {\n  from = image.base\n  squashfs { compression = var.token }\n}\n",
		want:  []string{`"` + Redacted + `" is not a valid compression`},
	}, {
		name:  "validation of a -var",
		build: `variable "pin" {` + "\n  sensitive = true\n  validation {\n    condition = var.pin == \"1234\"\n    error_message = \"too long: ${var.pin}\"\n  }\n}\n",
		opts:  Options{Vars: []string{"pin=" + secret}},
		want:  []string{"-var pin=" + Redacted + ":1:5: error: Invalid value for variable", "\n" + Redacted + "\n\nThis was checked", "pin=**************"},
	}, {
		name:  "a -var-file value",
		build: `variable "pin" {` + "\n  type = number\n  sensitive = true\n}\n",
		vars:  map[string]string{"site.vars.hcl": `pin = "` + secret + `"` + "\n"},
		want:  []string{"site.vars.hcl:1:7: error: Invalid value for variable", `pin = "**************"`},
	}, {
		name:  "an IMSBUILD_VAR_ value",
		build: `variable "pin" {` + "\n  type = number\n  sensitive = true\n}\n",
		opts:  Options{Environ: []string{"IMSBUILD_VAR_pin=" + secret}},
		want:  []string{"env IMSBUILD_VAR_pin:1:1: error: Invalid value for variable"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			files := map[string]string{"a.ims.hcl": sensitiveBase, "b.ims.hcl": tc.build}
			for k, v := range tc.vars {
				files[k] = v
				tc.opts.VarFiles = append(tc.opts.VarFiles, filepath.Join(dir, k))
			}
			writeFiles(t, dir, files)
			if tc.opts.Vars == nil && tc.opts.Environ == nil {
				tc.opts.Vars = []string{"token=" + secret}
			} else {
				tc.opts.Vars = append(tc.opts.Vars, "token=x"+secret)
			}
			_, got := writeDiags(t, dir, tc.opts)
			for _, want := range tc.want {
				if !strings.Contains(got, want) {
					t.Errorf("WriteDiagnostics() =\n%s\nwant it to contain %q", got, want)
				}
			}
			if strings.Contains(got, secret) {
				t.Errorf("WriteDiagnostics() =\n%s\nshows the sensitive value", got)
			}
		})
	}
}

func TestLongValuesElided(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"a.ims.hcl": sensitiveBase + "locals { ca = file(\"ca.pem\") }\nimage \"c\" {\n  from = image.base\n  kernel_parameters = local.ca + 1\n}\n",
		"ca.pem":    "-----BEGIN CERTIFICATE-----\nMIIB" + strings.Repeat("A", 200) + "\n-----END CERTIFICATE-----\n",
	})
	_, got := writeDiags(t, dir, Options{Vars: []string{"token=" + secret}})
	if !strings.Contains(got, "local.ca as a string of 259 bytes") || strings.Contains(got, "MIIB") {
		t.Errorf("WriteDiagnostics() =\n%s\nwant local.ca as its size only", got)
	}
}

func TestSensitiveRecorded(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"a.ims.hcl": sensitiveBase + `
variable "plain" { default = "visible" }
variable "n" {
  type      = number
  sensitive = true
  default   = 4711
}
image "c" {
  from = image.base
  customize {
    inline = "login ${var.plain} ${upper(var.token)}"
    env    = { TOKEN = var.token, PLAIN = var.plain, N = var.n }
  }
}
publish "dir" "d" {
  images = [image.c]
  path   = "out"
}
publish "ims" "i" {
  images   = [image.c]
  endpoint = "https://ims.example"
  token    = templatefile("t.tpl", { t = var.token })
}
`, "t.tpl": "Bearer ${t}"})
	cfg, diags := Load(dir, Options{Vars: []string{"token=" + secret}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	c := cfg.Images["c"].Customize[0]
	if c.Env["TOKEN"] != secret || c.Inline != "login visible "+strings.ToUpper(secret) {
		t.Fatalf("Customize = %+v, want the plain values decoded", c)
	}
	for _, want := range []string{secret, c.Inline, "4711", "Bearer " + secret} {
		if !slices.Contains(cfg.Sensitive, want) {
			t.Errorf("Sensitive = %q, want it to contain %q", cfg.Sensitive, want)
		}
	}
	if slices.Contains(cfg.Sensitive, "visible") {
		t.Errorf("Sensitive = %q, want no plain values", cfg.Sensitive)
	}
	for i := 1; i < len(cfg.Sensitive); i++ {
		if len(cfg.Sensitive[i]) > len(cfg.Sensitive[i-1]) {
			t.Errorf("Sensitive = %q, want longest first", cfg.Sensitive)
		}
	}
}

func TestNewRedactor(t *testing.T) {
	r := NewRedactor([]string{"abc", "abcdef", "xy"})
	if got, want := r("1 abcdef 2 abc 3 xy"), "1 "+Redacted+" 2 "+Redacted+" 3 xy"; got != want {
		t.Errorf("redact() = %q, want %q", got, want)
	}
}
