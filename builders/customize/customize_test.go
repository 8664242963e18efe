package customize_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/builders/customize"
	"github.com/imsbuild/imsbuild/builders/overlay"
	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/spec"
)

// backends returns the sandboxes to test with.
func backends(t *testing.T) []sandbox.Sandbox {
	t.Helper()
	testutil.RequireRoot(t)
	return []sandbox.Sandbox{
		sandbox.NewBwrap(testutil.RequireTool(t, "bwrap")),
		sandbox.NewNative(),
	}
}

// hostFile writes a host file with content and mode and returns its path.
func hostFile(t *testing.T, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// state describes what the sandbox must leave as it found: /.imsbuild and
// the /proc, /dev and /tmp mountpoints, and the host's mount table.
func state(t *testing.T, root string) string {
	t.Helper()
	var sb strings.Builder
	for _, name := range []string{".imsbuild", "proc", "dev", "tmp"} {
		fi, err := os.Lstat(filepath.Join(root, name))
		if err != nil {
			fmt.Fprintf(&sb, "%s: missing\n", name)
			continue
		}
		entries, _ := os.ReadDir(filepath.Join(root, name))
		fmt.Fprintf(&sb, "%s: %v %d entries\n", name, fi.Mode(), len(entries))
	}
	// Builds and tests running beside this one mount parent images
	// (builders/overlay) in the same mount namespace.
	mi, err := overlay.HostMounts()
	if err != nil {
		t.Fatal(err)
	}
	sb.WriteString(mi)
	return sb.String()
}

func TestApply(t *testing.T) {
	for _, sb := range backends(t) {
		t.Run(sb.Name(), func(t *testing.T) { testApply(t, sb) })
	}
}

func testApply(t *testing.T, sb sandbox.Sandbox) {
	tests := []struct {
		name    string
		bare    bool // no /proc, /dev, /tmp in the image
		steps   func(t *testing.T) []spec.Customize
		env     []string
		wantErr string
		check   func(t *testing.T, root, log string, err error)
	}{
		{
			name: "jailed inline writes the image",
			steps: func(t *testing.T) []spec.Customize {
				return []spec.Customize{{Jail: true, Inline: "echo x > /etc/x\n"}}
			},
			check: wantFile("etc/x", "x\n", 0o644),
		},
		{
			name: "jailed in a bare image",
			bare: true,
			steps: func(t *testing.T) []spec.Customize {
				return []spec.Customize{{Jail: true, Inline: "echo t > /tmp/t; test -e /proc/self/status; echo > /dev/null; echo x > /etc/x\n"}}
			},
			check: wantFile("etc/x", "x\n", 0o644),
		},
		{
			name: "non-jailed script writes /mnt/image",
			steps: func(t *testing.T) []spec.Customize {
				s := hostFile(t, "setup.sh", "test \"$IMAGE_ROOT\" = /mnt/image\necho y > /mnt/image/etc/y\n", 0o644)
				return []spec.Customize{{Jail: false, Script: s}}
			},
			check: wantFile("etc/y", "y\n", 0o644),
		},
		{
			name: "files copied with mode, then the script sees them",
			steps: func(t *testing.T) []spec.Customize {
				return []spec.Customize{{
					Jail: true,
					Files: []spec.FileCopy{
						{Dest: "/etc/motd", Source: hostFile(t, "motd", "welcome\n", 0o640)},
						{Dest: "/opt/site/bin/tool", Source: hostFile(t, "tool", "#!/bin/sh\necho tool\n", 0o4755)},
					},
					Inline: "/opt/site/bin/tool > /etc/tool.out\n",
				}}
			},
			check: func(t *testing.T, root, log string, err error) {
				wantFile("etc/motd", "welcome\n", 0o640)(t, root, log, err)
				wantFile("opt/site/bin/tool", "#!/bin/sh\necho tool\n", 0o4755)(t, root, log, err)
				wantFile("etc/tool.out", "tool\n", 0o644)(t, root, log, err)
			},
		},
		{
			name: "file through an in-image symlink",
			steps: func(t *testing.T) []spec.Customize {
				return []spec.Customize{{Jail: true, Files: []spec.FileCopy{
					{Dest: "/etc/link/motd", Source: hostFile(t, "motd", "hi\n", 0o644)},
				}}}
			},
			check: wantFile("usr/share/motd", "hi\n", 0o644),
		},
		{
			name: "file through an escaping symlink",
			steps: func(t *testing.T) []spec.Customize {
				return []spec.Customize{{Jail: true, Files: []spec.FileCopy{
					{Dest: "/escape/motd", Source: hostFile(t, "motd", "hi\n", 0o644)},
				}}}
			},
			wantErr: "customize step 1 (files): copy ",
			check: func(t *testing.T, root, log string, err error) {
				if !errors.Is(err, sandbox.ErrEscape) {
					t.Errorf("Apply() = %v, want %v", err, sandbox.ErrEscape)
				}
			},
		},
		{
			name: "steps in order, env",
			env:  []string{"SITE=lab", "B=base"},
			steps: func(t *testing.T) []spec.Customize {
				return []spec.Customize{
					{Jail: true, Inline: "echo one > /etc/order\n"},
					{Jail: true, Env: map[string]string{"Z": "z", "B": "step"},
						Inline: "cat /etc/order\necho two >> /etc/order\nenv | grep -v -e ^PWD= -e ^SHLVL= | sort\n"},
				}
			},
			check: func(t *testing.T, root, log string, err error) {
				wantFile("etc/order", "one\ntwo\n", 0o644)(t, root, log, err)
				want := "one\nB=step\nIMSBUILD=1\nPATH=/usr/sbin:/usr/bin:/sbin:/bin\nSITE=lab\nZ=z\n"
				if log != want {
					t.Errorf("log = %q, want %q", log, want)
				}
			},
		},
		{
			name: "output in whole lines",
			steps: func(t *testing.T) []spec.Customize {
				return []spec.Customize{{Jail: true, Inline: "printf 'out1\\nou'; printf 'err1\\n' >&2; printf 't2\\n'; printf 'tail' >&2\n"}}
			},
			check: func(t *testing.T, root, log string, err error) {
				lines := strings.Split(strings.TrimSuffix(log, "\n"), "\n")
				slices.Sort(lines)
				if want := []string{"err1", "out1", "out2", "tail"}; !slices.Equal(lines, want) {
					t.Errorf("log lines = %q, want %q", lines, want)
				}
			},
		},
		{
			name: "script failure",
			steps: func(t *testing.T) []spec.Customize {
				return []spec.Customize{
					{Jail: true, Inline: "true\n"},
					{Jail: true, Script: hostFile(t, "fail.sh", "echo before\nfalse\necho after\n", 0o644)},
				}
			},
			wantErr: "customize step 2 (fail.sh): exit status 1",
			check: func(t *testing.T, root, log string, err error) {
				var ee *sandbox.ExitError
				if !errors.As(err, &ee) || ee.Code != 1 {
					t.Errorf("Apply() = %v, want ExitError 1", err)
				}
				if log != "before\n" {
					t.Errorf("log = %q, want %q (sh -e stops at false)", log, "before\n")
				}
			},
		},
		{
			name: "exit code",
			steps: func(t *testing.T) []spec.Customize {
				return []spec.Customize{{Jail: true, Script: hostFile(t, "script.sh", "exit 3\n", 0o644)}}
			},
			wantErr: "customize step 1 (script.sh): exit status 3",
		},
		{
			name: "timeout",
			steps: func(t *testing.T) []spec.Customize {
				return []spec.Customize{{Jail: true, Timeout: 200 * time.Millisecond, Inline: "sleep 100\n"}}
			},
			wantErr: "customize step 1 (inline): sandbox: timeout",
			check: func(t *testing.T, root, log string, err error) {
				if !errors.Is(err, sandbox.ErrTimeout) {
					t.Errorf("Apply() = %v, want %v", err, sandbox.ErrTimeout)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := testutil.BusyboxRoot(t, false)
			if tc.bare {
				for _, d := range []string{"proc", "dev", "tmp"} {
					if err := os.Remove(filepath.Join(root, d)); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := os.MkdirAll(filepath.Join(root, "usr/share"), 0o755); err != nil {
				t.Fatal(err)
			}
			for link, target := range map[string]string{"etc/link": "/usr/share", "escape": "../../../../../../../../tmp"} {
				if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
					t.Fatal(err)
				}
			}
			before := state(t, root)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			var log bytes.Buffer
			err := customize.Apply(ctx, sb, root, tc.steps(t), tc.env, &log)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Apply() = %v (log %q)", err, log.String())
			case tc.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.wantErr)):
				t.Errorf("Apply() = %v, want %q", err, tc.wantErr)
			}
			if tc.check != nil {
				tc.check(t, root, log.String(), err)
			}
			if after := state(t, root); after != before {
				t.Errorf("sandbox left traces:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// wantFile checks a file of the image root.
func wantFile(name, content string, mode os.FileMode) func(t *testing.T, root, log string, err error) {
	return func(t *testing.T, root, log string, _ error) {
		t.Helper()
		p := filepath.Join(root, name)
		b, err := os.ReadFile(p)
		if err != nil || string(b) != content {
			t.Errorf("%s = %q, %v; want %q (log %q)", name, b, err, content, log)
			return
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		want := mode&os.ModePerm | mode&os.ModeSetuid
		if got := fi.Mode() & (os.ModePerm | os.ModeSetuid); got != want {
			t.Errorf("%s mode = %v, want %v", name, got, want)
		}
	}
}

func TestApplyNetwork(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("pong\n"))
			_ = c.Close()
		}
	}()
	script := fmt.Sprintf("nc -w 5 127.0.0.1 %d </dev/null > /etc/net.out\n", ln.Addr().(*net.TCPAddr).Port)
	for _, sb := range backends(t) {
		for _, network := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/network=%v", sb.Name(), network), func(t *testing.T) {
				root := testutil.BusyboxRoot(t, false)
				before := state(t, root)
				ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
				defer cancel()
				var log bytes.Buffer
				err := customize.Apply(ctx, sb, root, []spec.Customize{{Jail: true, Network: network, Inline: script}}, nil, &log)
				if network {
					if err != nil {
						t.Fatalf("Apply() = %v (log %q)", err, log.String())
					}
					if b, _ := os.ReadFile(filepath.Join(root, "etc/net.out")); string(b) != "pong\n" {
						t.Errorf("net.out = %q, want %q", b, "pong\n")
					}
				} else if err == nil {
					t.Errorf("Apply() = nil, want a connection failure (log %q)", log.String())
				}
				if after := state(t, root); after != before {
					t.Errorf("sandbox left traces:\nbefore:\n%s\nafter:\n%s", before, after)
				}
			})
		}
	}
}

// TestApplyUmask customizes from an imsbuild with umask 027: the files a
// script writes must get the modes they get on any builder.
func TestApplyUmask(t *testing.T) {
	for _, sb := range backends(t) {
		t.Run(sb.Name(), func(t *testing.T) {
			root := testutil.BusyboxRoot(t, false)
			old := syscall.Umask(0o027)
			defer syscall.Umask(old)
			var log bytes.Buffer
			steps := []spec.Customize{{Jail: true, Inline: "echo compute > /etc/hostname\nmkdir /etc/compute.d\n"}}
			if err := customize.Apply(t.Context(), sb, root, steps, nil, &log); err != nil {
				t.Fatalf("Apply() = %v (log %q)", err, log.String())
			}
			for name, want := range map[string]os.FileMode{"etc/hostname": 0o644, "etc/compute.d": os.ModeDir | 0o755} {
				fi, err := os.Stat(filepath.Join(root, name))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode() != want {
					t.Errorf("%s mode = %v, want %v", name, fi.Mode(), want)
				}
			}
		})
	}
}
