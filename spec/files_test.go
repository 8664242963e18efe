package spec

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseMode(t *testing.T) {
	tests := []struct {
		in      string
		want    os.FileMode
		wantErr bool
	}{
		{in: "0644", want: 0o644},
		{in: "644", want: 0o644},
		{in: "0", want: 0},
		{in: "0000", want: 0},
		{in: "00600", want: 0o600},
		{in: "4755", want: 0o755 | os.ModeSetuid},
		{in: "2750", want: 0o750 | os.ModeSetgid},
		{in: "1777", want: 0o777 | os.ModeSticky},
		{in: "07777", want: 0o777 | os.ModeSetuid | os.ModeSetgid | os.ModeSticky},
		{in: "", wantErr: true},
		{in: "0o644", wantErr: true},
		{in: "0x1a4", wantErr: true},
		{in: "0689", wantErr: true},
		{in: "-644", wantErr: true},
		{in: " 644", wantErr: true},
		{in: "10000", wantErr: true},
		{in: "77777777777777777777777", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseMode(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseMode(%q) = %v, %v; want error %v", tc.in, got, err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if got != tc.want {
				t.Errorf("ParseMode(%q) = %v, want %v", tc.in, got, tc.want)
			}
			back, err := ParseMode(FormatMode(got))
			if err != nil || back != got {
				t.Errorf("ParseMode(FormatMode(%v) = %q) = %v, %v; want %v", got, FormatMode(got), back, err, got)
			}
		})
	}
}

func TestFormatMode(t *testing.T) {
	tests := []struct {
		in   os.FileMode
		want string
	}{
		{in: 0o644, want: "0644"},
		{in: 0, want: "0000"},
		{in: 0o755 | os.ModeSetuid, want: "4755"},
		{in: 0o777 | os.ModeSetuid | os.ModeSetgid | os.ModeSticky, want: "7777"},
	}
	for _, tc := range tests {
		if got := FormatMode(tc.in); got != tc.want {
			t.Errorf("FormatMode(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseOwner(t *testing.T) {
	tests := []struct {
		in          string
		user, group string
		wantErr     bool
	}{
		{in: "root", user: "root"},
		{in: "root:root", user: "root", group: "root"},
		{in: "0", user: "0"},
		{in: "0:0", user: "0", group: "0"},
		{in: "1000:wheel", user: "1000", group: "wheel"},
		{in: "_ssh:ssh-users", user: "_ssh", group: "ssh-users"},
		{in: "machine$", user: "machine$"},
		{in: "4294967294", user: "4294967294"},
		{in: "", wantErr: true},
		{in: ":root", wantErr: true},
		{in: "root:", wantErr: true},
		{in: "a:b:c", wantErr: true},
		{in: "site admin", wantErr: true},
		{in: "4294967295", wantErr: true},
		{in: "1abc", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "$", wantErr: true},
		{in: "a$b", wantErr: true},
		{in: "abcdefghijklmnopqrstuvwxyzabcdefg", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			user, group, err := ParseOwner(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseOwner(%q) = %q, %q, %v; want error %v", tc.in, user, group, err, tc.wantErr)
			}
			if user != tc.user || group != tc.group {
				t.Errorf("ParseOwner(%q) = %q, %q; want %q, %q", tc.in, user, group, tc.user, tc.group)
			}
		})
	}
}

func TestCustomizeFiles(t *testing.T) {
	tests := []struct {
		name  string
		files string // the body of a customize block
		want  []FileCopy
	}{
		{
			name:  "files map only keeps the source mode",
			files: `files = { "/etc/motd" = "files/motd" }`,
			want:  []FileCopy{{Dest: "/etc/motd", Source: "files/motd"}},
		},
		{
			name: "file blocks and the files map merge, sorted by destination",
			files: `
files = { "/etc/motd" = "files/motd", "/etc/issue" = "/abs/issue" }
file {
  source      = "files/sshd_config"
  destination = "/etc/ssh//sshd_config"
  mode        = "0600"
  owner       = "root:root"
}
file {
  source      = "files/tool"
  destination = "/usr/local/bin/tool"
  mode        = "4755"
}
file {
  source      = "files/site"
  destination = "/home/site/.profile"
  owner       = "1000"
}`,
			want: []FileCopy{
				{Dest: "/etc/issue", Source: "/abs/issue"},
				{Dest: "/etc/motd", Source: "files/motd"},
				{Dest: "/etc/ssh/sshd_config", Source: "files/sshd_config", Mode: 0o600, HasMode: true, Owner: "root:root"},
				{Dest: "/home/site/.profile", Source: "files/site", Owner: "1000"},
				{Dest: "/usr/local/bin/tool", Source: "files/tool", Mode: 0o755 | os.ModeSetuid, HasMode: true},
			},
		},
		{
			name: "mode 0 is set, not kept",
			files: `
file {
  source      = "files/secret"
  destination = "/etc/secret"
  mode        = "0000"
}`,
			want: []FileCopy{{Dest: "/etc/secret", Source: "files/secret", HasMode: true}},
		},
		{
			name: "a file block alone makes a customize block",
			files: `
file {
  source      = "files/motd"
  destination = "/etc/motd"
  mode        = 644
}`,
			want: []FileCopy{{Dest: "/etc/motd", Source: "files/motd", Mode: 0o644, HasMode: true}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"build.ims.hcl": `
image "base" {
  import = "root.tar"
}
image "compute" {
  from = image.base
  customize {
` + tc.files + `
  }
}
`})
			cfg, diags := Load(dir, Options{})
			if diags.HasErrors() {
				t.Fatalf("Load() diagnostics: %v", diags)
			}
			for i := range tc.want {
				if !filepath.IsAbs(tc.want[i].Source) {
					tc.want[i].Source = filepath.Join(dir, tc.want[i].Source)
				}
			}
			got := cfg.Images["compute"].Customize[0].Files
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Files mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
