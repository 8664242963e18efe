package kiwi

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRender(t *testing.T) {
	tests := []struct {
		name, file, in string
		template       map[string]string
		want           string   // rendered file; "" when an error is expected
		wantErr        []string // substrings of the error
	}{
		{
			name:     "placeholders",
			file:     "config.xml",
			in:       "<repository distribution=\"{{release}}\">\n<x a=\"{{ release }}\" b=\"{{  arch\t}}\"/>\nno placeholder {here}\n",
			template: map[string]string{"release": "bookworm", "arch": "x86_64"},
			want:     "<repository distribution=\"bookworm\">\n<x a=\"bookworm\" b=\"x86_64\"/>\nno placeholder {here}\n",
		},
		{
			name:     "single kiwi file",
			file:     "node.kiwi",
			in:       "<image name=\"{{ name }}\"/>\n",
			template: map[string]string{"name": "n1"},
			want:     "<image name=\"n1\"/>\n",
		},
		{
			name:     "unknown keys name file and line",
			file:     "config.xml",
			in:       "<image>\n  <a>{{ release }}</a>\n  <b>{{ typo }}</b>\n  <c>{{ other}}</c>\n</image>\n",
			template: map[string]string{"release": "bookworm"},
			wantErr:  []string{`config.xml:3: unknown template key "typo"`, `config.xml:4: unknown template key "other"`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, tc.file)
			mustWrite(t, file, tc.in, 0o640)
			err := Render(dir, tc.template)
			got, rerr := os.ReadFile(file)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if tc.wantErr != nil {
				if !errors.Is(err, ErrUnknownKey) {
					t.Fatalf("Render() = %v, want ErrUnknownKey", err)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("Render() = %v, want it to contain %q", err, w)
					}
				}
				if string(got) != tc.in {
					t.Errorf("file changed on error:\n%s", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Render() = %v", err)
			}
			if string(got) != tc.want {
				t.Errorf("rendered:\n%s\nwant:\n%s", got, tc.want)
			}
			if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o640 {
				t.Errorf("mode = %v, want 0640", fi.Mode().Perm())
			}
		})
	}
}

func TestRenderNoDescription(t *testing.T) {
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "a.kiwi"), "", 0o644)
	mustWrite(t, filepath.Join(dir, "b.kiwi"), "", 0o644)
	for _, d := range []string{t.TempDir(), dir} {
		if err := Render(d, nil); err == nil {
			t.Errorf("Render(%s) = nil, want an error", d)
		}
	}
}

func TestRenderExample(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "node")
	if err := FetchRecipe(t.Context(), "../../examples/debian-node/recipes/node", dst); err != nil {
		t.Fatal(err)
	}
	if err := Render(dst, map[string]string{"release": "bookworm"}); err != nil {
		t.Fatalf("Render() = %v", err)
	}
	repos, err := Repositories(dst)
	if err != nil {
		t.Fatalf("Repositories() = %v", err)
	}
	if len(repos) != 1 || repos[0] != "http://deb.debian.org/debian" {
		t.Errorf("Repositories() = %q, want the Debian mirror", repos)
	}
	b, _ := os.ReadFile(filepath.Join(dst, "config.xml"))
	if !strings.Contains(string(b), `distribution="bookworm"`) || strings.Contains(string(b), "{{") {
		t.Errorf("rendered config.xml:\n%s", b)
	}
}
