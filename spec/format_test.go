package spec

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestFormat(t *testing.T) {
	const messy = "image \"a\" {\nimport=\"x\"\n  name   =   \"y\"\n}\n"
	const canonical = "image \"a\" {\n  import = \"x\"\n  name   = \"y\"\n}\n"
	tests := []struct {
		name        string
		files       map[string]string
		check       bool
		wantChanged []string
		wantFiles   map[string]string // content after Format
		wantErr     string
	}{
		{
			name:        "check reports and writes nothing",
			files:       map[string]string{"a.ims.hcl": messy, "b.ims.hcl": canonical, "c.hcl": messy},
			check:       true,
			wantChanged: []string{"a.ims.hcl"},
			wantFiles:   map[string]string{"a.ims.hcl": messy, "b.ims.hcl": canonical, "c.hcl": messy},
		},
		{
			name:        "rewrite fixes",
			files:       map[string]string{"a.ims.hcl": messy, "b.ims.hcl": canonical, "c.hcl": messy},
			wantChanged: []string{"a.ims.hcl"},
			wantFiles:   map[string]string{"a.ims.hcl": canonical, "b.ims.hcl": canonical, "c.hcl": messy},
		},
		{
			name:      "canonical is left alone",
			files:     map[string]string{"b.ims.hcl": canonical},
			wantFiles: map[string]string{"b.ims.hcl": canonical},
		},
		{
			name:      "syntax error is reported, file untouched",
			files:     map[string]string{"a.ims.hcl": "image \"a\" {\n"},
			wantFiles: map[string]string{"a.ims.hcl": "image \"a\" {\n"},
			wantErr:   "Unclosed configuration block",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tc.files)
			changed, err := Format(dir, tc.check)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("Format() error = %v, want one containing %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatalf("Format() error = %v", err)
			}
			var want []string
			for _, n := range tc.wantChanged {
				want = append(want, filepath.Join(dir, n))
			}
			if !slices.Equal(changed, want) {
				t.Errorf("Format() = %v, want %v", changed, want)
			}
			for name, content := range tc.wantFiles {
				got, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != content {
					t.Errorf("%s after Format() = %q, want %q", name, got, content)
				}
			}
			if !tc.check && tc.wantErr == "" {
				again, err := Format(dir, true)
				if err != nil || len(again) != 0 {
					t.Errorf("Format(check) after rewrite = %v, %v; want nothing to change", again, err)
				}
			}
		})
	}
}

func TestFormatMissingDir(t *testing.T) {
	if _, err := Format(filepath.Join(t.TempDir(), "nope"), true); err == nil {
		t.Error("Format(missing dir) error = nil, want one")
	}
}
