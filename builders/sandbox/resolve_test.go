package sandbox_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/imsbuild/imsbuild/builders/sandbox"
)

func TestResolveIn(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"usr/lib", "usr/share", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"lib":           "usr/lib",
		"etc/abs":       "/usr/share",
		"etc/rel":       "../usr/share",
		"etc/escape":    "../../outside",
		"etc/absescape": "/../outside",
		"etc/loop":      "loop",
		"tmp":           "/var/tmp",
	}
	for link, target := range links {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		path    string
		want    string
		wantErr error
		anyErr  bool
	}{
		{path: "/", want: "/"},
		{path: "/etc/passwd", want: "/etc/passwd"},
		{path: "/lib/x", want: "/usr/lib/x"},
		{path: "/etc/abs/motd", want: "/usr/share/motd"},
		{path: "/etc/rel/motd", want: "/usr/share/motd"},
		{path: "/etc/../lib", want: "/usr/lib"},
		{path: "/tmp", want: "/var/tmp"},
		{path: "/new/dir/../file", want: "/new/file"},
		{path: "/../etc", wantErr: sandbox.ErrEscape},
		{path: "/etc/escape/x", wantErr: sandbox.ErrEscape},
		{path: "/etc/absescape", wantErr: sandbox.ErrEscape},
		{path: "/etc/loop", anyErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			got, err := sandbox.ResolveIn(root, tc.path)
			switch {
			case tc.anyErr:
				if err == nil {
					t.Errorf("ResolveIn(%q) = %q, want an error", tc.path, got)
				}
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("ResolveIn(%q) = %q, %v; want %v", tc.path, got, err, tc.wantErr)
				}
			case err != nil || got != tc.want:
				t.Errorf("ResolveIn(%q) = %q, %v; want %q", tc.path, got, err, tc.want)
			}
		})
	}
}
