package customize_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/builders/customize"
	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/spec"
)

// Users and groups of the test image only; the host's staff group, if any,
// has another gid (50 on Debian).
const (
	imagePasswd = "bob:x:4242:4343:Bob:/home/bob:/bin/sh\n"
	imageGroup  = "staff:x:4343:bob\nwheel:x:4444:\n"
)

// owned is the wanted owner and mode of a file of the image.
type owned struct {
	uid, gid int
	mode     fs.FileMode // permission and special bits
}

func TestApplyFileOwnerMode(t *testing.T) {
	testutil.RequireRoot(t)
	tests := []struct {
		name    string
		setup   func(t *testing.T, root string)
		before  string // inline script of a step before the files
		files   func(t *testing.T) []spec.FileCopy
		wantErr string
		want    map[string]owned // image path → owner and mode; nil: absent
	}{
		{
			name: "numeric uid and gid, source mode kept",
			files: func(t *testing.T) []spec.FileCopy {
				return []spec.FileCopy{{Dest: "/etc/x", Source: hostFile(t, "x", "x\n", 0o640), Owner: "1234:5678"}}
			},
			want: map[string]owned{"etc/x": {1234, 5678, 0o640}},
		},
		{
			name: "names from the image's passwd and group",
			files: func(t *testing.T) []spec.FileCopy {
				return []spec.FileCopy{{Dest: "/home/bob/.profile", Source: hostFile(t, "p", "p\n", 0o644), Owner: "bob:staff"}}
			},
			want: map[string]owned{"home/bob/.profile": {4242, 4343, 0o644}},
		},
		{
			name: "user and numeric gid",
			files: func(t *testing.T) []spec.FileCopy {
				return []spec.FileCopy{{Dest: "/etc/x", Source: hostFile(t, "x", "x\n", 0o644), Owner: "bob:99"}}
			},
			want: map[string]owned{"etc/x": {4242, 99, 0o644}},
		},
		{
			name: "user only: a new file keeps root's group, a replaced one its own",
			setup: func(t *testing.T, root string) {
				writeOwned(t, filepath.Join(root, "etc/old"), 7, 8, 0o600)
			},
			files: func(t *testing.T) []spec.FileCopy {
				return []spec.FileCopy{
					{Dest: "/etc/new", Source: hostFile(t, "n", "n\n", 0o644), Owner: "bob"},
					{Dest: "/etc/old", Source: hostFile(t, "o", "o\n", 0o644), Owner: "bob"},
				}
			},
			want: map[string]owned{"etc/new": {4242, 0, 0o644}, "etc/old": {4242, 8, 0o644}},
		},
		{
			name: "no owner: a replaced file keeps its owner",
			setup: func(t *testing.T, root string) {
				writeOwned(t, filepath.Join(root, "etc/old"), 7, 8, 0o600)
			},
			files: func(t *testing.T) []spec.FileCopy {
				return []spec.FileCopy{{Dest: "/etc/old", Source: hostFile(t, "o", "o\n", 0o640)}}
			},
			want: map[string]owned{"etc/old": {7, 8, 0o640}},
		},
		{
			name: "setuid mode with an owner",
			files: func(t *testing.T) []spec.FileCopy {
				return []spec.FileCopy{{
					Dest: "/usr/bin/tool", Source: hostFile(t, "tool", "#!/bin/sh\n", 0o644),
					Mode: 0o750 | os.ModeSetuid | os.ModeSetgid, HasMode: true, Owner: "bob:wheel",
				}}
			},
			want: map[string]owned{"usr/bin/tool": {4242, 4444, 0o750 | os.ModeSetuid | os.ModeSetgid}},
		},
		{
			name: "mode set, including 0 and sticky",
			files: func(t *testing.T) []spec.FileCopy {
				return []spec.FileCopy{
					{Dest: "/etc/secret", Source: hostFile(t, "s", "s\n", 0o644), HasMode: true},
					{Dest: "/etc/sticky", Source: hostFile(t, "k", "k\n", 0o644), Mode: 0o777 | os.ModeSticky, HasMode: true},
					{Dest: "/etc/sshd_config", Source: hostFile(t, "c", "c\n", 0o4755), Mode: 0o600, HasMode: true, Owner: "0:0"},
				}
			},
			want: map[string]owned{
				"etc/secret":      {0, 0, 0},
				"etc/sticky":      {0, 0, 0o777 | os.ModeSticky},
				"etc/sshd_config": {0, 0, 0o600},
			},
		},
		{
			name: "mode kept when not set, special bits included",
			files: func(t *testing.T) []spec.FileCopy {
				return []spec.FileCopy{{Dest: "/usr/bin/sg", Source: hostFile(t, "sg", "sg\n", 0o711|os.ModeSetgid)}}
			},
			want: map[string]owned{"usr/bin/sg": {0, 0, 0o711 | os.ModeSetgid}},
		},
		{
			name: "passwd behind an in-image absolute symlink",
			setup: func(t *testing.T, root string) {
				p := filepath.Join(root, "etc/passwd")
				if err := os.MkdirAll(filepath.Join(root, "usr/lib"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(p, filepath.Join(root, "usr/lib/passwd")); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink("/usr/lib/passwd", p); err != nil {
					t.Fatal(err)
				}
			},
			files: func(t *testing.T) []spec.FileCopy {
				return []spec.FileCopy{{Dest: "/etc/x", Source: hostFile(t, "x", "x\n", 0o644), Owner: "bob"}}
			},
			want: map[string]owned{"etc/x": {4242, 0, 0o644}},
		},
		{
			name:   "user added by an earlier step",
			before: "echo 'carol:x:5001:5001::/home/carol:/bin/sh' >> /etc/passwd\necho 'carol:x:5002:' >> /etc/group\n",
			files: func(t *testing.T) []spec.FileCopy {
				return []spec.FileCopy{{Dest: "/etc/x", Source: hostFile(t, "x", "x\n", 0o644), Owner: "carol:carol"}}
			},
			want: map[string]owned{"etc/x": {5001, 5002, 0o644}},
		},
		{
			name: "unknown user",
			files: func(t *testing.T) []spec.FileCopy {
				return []spec.FileCopy{{Dest: "/etc/x", Source: hostFile(t, "x", "x\n", 0o644), Owner: "root:root"}, {Dest: "/etc/y", Source: hostFile(t, "y", "y\n", 0o644), Owner: "alice"}}
			},
			wantErr: `customize step 1 (files): file /etc/y: owner "alice": no such user in the image's /etc/passwd`,
			want:    map[string]owned{"etc/x": {0, 0, 0o644}, "etc/y": {-1, -1, 0}},
		},
		{
			name: "unknown group",
			files: func(t *testing.T) []spec.FileCopy {
				return []spec.FileCopy{{Dest: "/etc/x", Source: hostFile(t, "x", "x\n", 0o644), Owner: "bob:admins"}}
			},
			wantErr: `customize step 1 (files): file /etc/x: owner "bob:admins": no such group in the image's /etc/group`,
			want:    map[string]owned{"etc/x": {-1, -1, 0}},
		},
		{
			name: "user of the host only",
			setup: func(t *testing.T, root string) {
				if err := os.Remove(filepath.Join(root, "etc/passwd")); err != nil {
					t.Fatal(err)
				}
			},
			files: func(t *testing.T) []spec.FileCopy {
				return []spec.FileCopy{{Dest: "/etc/x", Source: hostFile(t, "x", "x\n", 0o644), Owner: "root"}}
			},
			wantErr: `customize step 1 (files): file /etc/x: owner "root": no such user in the image's /etc/passwd`,
		},
		{
			name: "passwd escaping the image",
			setup: func(t *testing.T, root string) {
				p := filepath.Join(root, "etc/passwd")
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink("../../../../../../../../../etc/passwd", p); err != nil {
					t.Fatal(err)
				}
			},
			files: func(t *testing.T) []spec.FileCopy {
				return []spec.FileCopy{{Dest: "/etc/x", Source: hostFile(t, "x", "x\n", 0o644), Owner: "root"}}
			},
			wantErr: `customize step 1 (files): file /etc/x: owner "root": image /etc/passwd: resolve `,
			want:    map[string]owned{"etc/x": {-1, -1, 0}},
		},
		{
			name: "bad owner syntax",
			files: func(t *testing.T) []spec.FileCopy {
				return []spec.FileCopy{{Dest: "/etc/x", Source: hostFile(t, "x", "x\n", 0o644), Owner: "a:b:c"}}
			},
			wantErr: `customize step 1 (files): file /etc/x: owner: "a:b:c" is not an owner`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := testutil.BusyboxRoot(t, false)
			appendFile(t, filepath.Join(root, "etc/passwd"), imagePasswd)
			appendFile(t, filepath.Join(root, "etc/group"), imageGroup)
			if tc.setup != nil {
				tc.setup(t, root)
			}
			var steps []spec.Customize
			if tc.before != "" {
				steps = append(steps, spec.Customize{Jail: true, Inline: tc.before})
			}
			steps = append(steps, spec.Customize{Jail: true, Files: tc.files(t)})
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			var log bytes.Buffer
			err := customize.Apply(ctx, sandbox.NewNative(), root, steps, nil, &log)
			wantErr := tc.wantErr
			if wantErr != "" && tc.before != "" {
				wantErr = strings.Replace(wantErr, "step 1", "step 2", 1)
			}
			switch {
			case wantErr == "" && err != nil:
				t.Fatalf("Apply() = %v (log %q)", err, log.String())
			case wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), wantErr)):
				t.Errorf("Apply() = %v, want %q", err, wantErr)
			}
			for name, want := range tc.want {
				checkOwned(t, root, name, want)
			}
			leftovers, _ := filepath.Glob(filepath.Join(root, "etc/.imsbuild-copy-*"))
			if len(leftovers) > 0 {
				t.Errorf("temporary files left: %v", leftovers)
			}
		})
	}
}

// checkOwned checks the owner and mode of a file of the image; a uid of -1
// wants it absent.
func checkOwned(t *testing.T, root, name string, want owned) {
	t.Helper()
	fi, err := os.Lstat(filepath.Join(root, name))
	if want.uid < 0 {
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: Lstat() = %v, want it absent", name, err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != want.uid || int(st.Gid) != want.gid {
		t.Errorf("%s owner = %d:%d, want %d:%d", name, st.Uid, st.Gid, want.uid, want.gid)
	}
	bits := fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky
	if got := fi.Mode() & bits; got != want.mode&bits {
		t.Errorf("%s mode = %v, want %v", name, got, want.mode&bits)
	}
	if !fi.Mode().IsRegular() {
		t.Errorf("%s mode = %v, want a regular file", name, fi.Mode())
	}
}

func appendFile(t *testing.T, p, text string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// writeOwned writes a file owned by uid:gid with mode.
func writeOwned(t *testing.T, p string, uid, gid int, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte("old\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}
