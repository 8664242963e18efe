package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

func TestRunJailed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, sb sandbox.Sandbox) {
		data := t.TempDir()
		if err := os.WriteFile(filepath.Join(data, "in"), []byte("from host\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name    string
			spec    sandbox.Spec
			script  string
			want    string
			wantErr error
			notInit bool // needs the command not to be the namespace's init
		}{
			{name: "stdout", script: "echo hello", want: "hello\n"},
			{name: "image is root", script: "cat /etc/os-release | head -n1", want: "ID=busybox\n"},
			{name: "exit code", script: "exit 3", wantErr: &sandbox.ExitError{Code: 3}},
			{name: "signal", script: "kill -9 $$", wantErr: &sandbox.ExitError{Code: 137}, notInit: true},
			// runc adds HOME when it is missing, as the OCI runtime spec allows.
			{name: "only the given env", spec: sandbox.Spec{Env: []string{"A=1", "PATH=/bin", "A=2", "HOME=/"}},
				script: "env | grep -v -e '^PWD=' -e '^SHLVL=' | sort", want: "A=2\nHOME=/\nPATH=/bin\n"},
			{name: "hostname", script: "hostname", want: "imsbuild\n"},
			{name: "own pid namespace", script: fmt.Sprintf("test ! -e /proc/%d && test -e /proc/self/status && echo ok", os.Getpid()), want: "ok\n"},
			{name: "dev", script: "echo x > /dev/null && head -c 3 /dev/zero | wc -c", want: "3\n"},
			{name: "tmp writable", script: "echo t > /tmp/t && cat /tmp/t && stat -c %a /tmp", want: "t\n1777\n"},
			{name: "dir", spec: sandbox.Spec{Dir: "/etc"}, script: "pwd", want: "/etc\n"},
			{name: "read-only bind", spec: sandbox.Spec{Binds: []sandbox.Bind{{Source: data, Dest: "/data", ReadOnly: true}}},
				script: "cat /data/in; touch /data/new 2>/dev/null && echo writable; true", want: "from host\n"},
			{name: "bind under tmp", spec: sandbox.Spec{Binds: []sandbox.Bind{{Source: filepath.Join(data, "in"), Dest: "/tmp/a/in"}}},
				script: "cat /tmp/a/in", want: "from host\n"},
			{name: "no network", script: "grep -c : /proc/net/dev", want: "1\n"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				if tc.notInit && commandIsInit(sb) {
					t.Skip("the command is init: it ignores signals it has no handler for")
				}
				root := testutil.BusyboxRoot(t, false)
				// runc gives /tmp the mode of the image's /tmp, which
				// BusyboxRoot leaves at 0777 (os.Chmod wants os.ModeSticky).
				if err := os.Chmod(filepath.Join(root, "tmp"), os.ModeSticky|0o777); err != nil {
					t.Fatal(err)
				}
				before := tree(t, root)
				tc.spec.Root, tc.spec.Jail = root, true
				got, stderr, err := shell(t, sb, tc.spec, tc.script)
				if !cmp.Equal(err, tc.wantErr, cmp.Comparer(sameError)) {
					t.Fatalf("Run() error = %v, want %v (stderr %q)", err, tc.wantErr, stderr)
				}
				if err == nil && got != tc.want {
					t.Errorf("Run() stdout = %q, want %q (stderr %q)", got, tc.want, stderr)
				}
				if d := diff(before, tree(t, root)); d != "" {
					t.Errorf("image root changed:\n%s", d)
				}
				if _, err := os.Stat(filepath.Join(data, "new")); err == nil {
					t.Errorf("read-only bind was written")
				}
			})
		}
	})
}

// sameError compares errors by message and, for ExitError, by code.
func sameError(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	var ea, eb *sandbox.ExitError
	if errors.As(a, &ea) != errors.As(b, &eb) {
		return false
	}
	return a.Error() == b.Error()
}

func TestRunWritesImage(t *testing.T) {
	forEachBackend(t, func(t *testing.T, sb sandbox.Sandbox) {
		tests := []struct {
			name, script, file string
			jail               bool
		}{
			{name: "jailed", jail: true, script: "echo x > /etc/x", file: "etc/x"},
			{name: "non-jailed", script: "echo x > /mnt/image/etc/x", file: "etc/x"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				root := testutil.BusyboxRoot(t, false)
				_, stderr, err := shell(t, sb, sandbox.Spec{Root: root, Jail: tc.jail}, tc.script)
				if err != nil {
					t.Fatalf("Run() = %v (stderr %q)", err, stderr)
				}
				got, err := os.ReadFile(filepath.Join(root, tc.file))
				if err != nil || string(got) != "x\n" {
					t.Errorf("%s = %q, %v; want %q", tc.file, got, err, "x\n")
				}
			})
		}
	})
}

func TestRunNonJailed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, sb sandbox.Sandbox) {
		root := testutil.BusyboxRoot(t, false)
		host, err := os.ReadFile("/etc/hostname")
		if err != nil {
			host = nil
		}
		script := `
touch /usr/imsbuild-ro-test 2>/dev/null && echo host-writable
test -f /mnt/image/etc/os-release && echo image
echo t > /tmp/t && echo tmp
test -e /proc/self/status && echo proc
echo > /dev/null && echo dev
hostname
`
		got, stderr, err := shell(t, sb, sandbox.Spec{Root: root}, script)
		if err != nil {
			t.Fatalf("Run() = %v (stderr %q)", err, stderr)
		}
		if want := "image\ntmp\nproc\ndev\nimsbuild\n"; got != want {
			t.Errorf("Run() stdout = %q, want %q (stderr %q)", got, want, stderr)
		}
		if _, err := os.Stat("/usr/imsbuild-ro-test"); err == nil {
			t.Errorf("host root was written")
		}
		if _, err := os.Stat(sandbox.ImageDir); err == nil {
			t.Errorf("%s created on the host", sandbox.ImageDir)
		}
		if now, _ := os.ReadFile("/etc/hostname"); string(now) != string(host) {
			t.Errorf("host name changed")
		}
	})
}

func TestMountpointsRemoved(t *testing.T) {
	forEachBackend(t, func(t *testing.T, sb sandbox.Sandbox) {
		tests := []struct {
			name   string
			setup  func(t *testing.T, root string)
			spec   sandbox.Spec
			script string
			want   string
		}{
			{
				name:   "missing proc dev tmp",
				script: "test -e /proc/self/status && echo > /dev/null && echo t > /tmp/t && cat /tmp/t",
				want:   "t\n",
			},
			{
				name: "tmp is an absolute symlink",
				setup: func(t *testing.T, root string) {
					mustMkdir(t, filepath.Join(root, "var/tmp"))
					mustSymlink(t, "/var/tmp", filepath.Join(root, "tmp"))
				},
				script: "echo t > /tmp/imsbuild-sandbox-test && cat /var/tmp/imsbuild-sandbox-test",
				want:   "t\n",
			},
			{
				name:   "bind into a new dir",
				spec:   sandbox.Spec{Binds: []sandbox.Bind{{Source: "/etc", Dest: "/.imsbuild/host/etc", ReadOnly: true}}},
				script: "test -d /.imsbuild/host/etc && echo ok",
				want:   "ok\n",
			},
			{
				name:   "tmp dir",
				setup:  func(t *testing.T, root string) {},
				spec:   sandbox.Spec{TmpDir: t.TempDir()},
				script: "echo done > /tmp/complete; echo ok",
				want:   "ok\n",
			},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				root := bareRoot(t)
				if tc.setup != nil {
					tc.setup(t, root)
				}
				before := tree(t, root)
				tc.spec.Root, tc.spec.Jail = root, true
				got, stderr, err := shell(t, sb, tc.spec, tc.script)
				if err != nil {
					t.Fatalf("Run() = %v (stderr %q)", err, stderr)
				}
				if got != tc.want {
					t.Errorf("Run() stdout = %q, want %q", got, tc.want)
				}
				if d := diff(before, tree(t, root)); d != "" {
					t.Errorf("image root changed:\n%s", d)
				}
				if tc.spec.TmpDir != "" {
					if b, err := os.ReadFile(filepath.Join(tc.spec.TmpDir, "complete")); string(b) != "done\n" {
						t.Errorf("TmpDir/complete = %q, %v", b, err)
					}
				}
			})
		}
		if _, err := os.Stat("/var/tmp/imsbuild-sandbox-test"); err == nil {
			t.Errorf("the image's /tmp symlink led to the host")
		}
	})
}

func TestRunRefusesEscape(t *testing.T) {
	forEachBackend(t, func(t *testing.T, sb sandbox.Sandbox) {
		root := bareRoot(t)
		mustSymlink(t, "../../../../../../../../tmp", filepath.Join(root, "tmp"))
		_, _, err := shell(t, sb, sandbox.Spec{Root: root, Jail: true}, "true")
		if !errors.Is(err, sandbox.ErrEscape) {
			t.Errorf("Run() = %v, want %v", err, sandbox.ErrEscape)
		}
		if _, err := os.Lstat(filepath.Join(root, "proc")); err == nil {
			t.Errorf("mountpoint /proc left behind")
		}
	})
}

func TestResolvConf(t *testing.T) {
	testutil.RequireTool(t, "busybox")
	host, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		t.Skip("host has no /etc/resolv.conf")
	}
	forEachBackend(t, func(t *testing.T, sb sandbox.Sandbox) {
		const image = "nameserver 192.0.2.1\n"
		tests := []struct {
			network bool
			want    string
		}{
			{network: false, want: image},
			{network: true, want: string(host)},
		}
		for _, tc := range tests {
			t.Run(fmt.Sprintf("network=%v", tc.network), func(t *testing.T) {
				root := testutil.BusyboxRoot(t, false)
				conf := filepath.Join(root, "etc/resolv.conf")
				if err := os.WriteFile(conf, []byte(image), 0o644); err != nil {
					t.Fatal(err)
				}
				got, stderr, err := shell(t, sb, sandbox.Spec{Root: root, Jail: true, Network: tc.network}, "cat /etc/resolv.conf")
				if err != nil {
					t.Fatalf("Run() = %v (stderr %q)", err, stderr)
				}
				if got != tc.want {
					t.Errorf("resolv.conf = %q, want %q", got, tc.want)
				}
				if b, _ := os.ReadFile(conf); string(b) != image {
					t.Errorf("image resolv.conf = %q after run, want %q", b, image)
				}
			})
		}
	})
}

func mustMkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func TestOpen(t *testing.T) {
	for _, name := range []string{"bogus"} {
		if _, err := sandbox.Open(name); err == nil || !strings.Contains(err.Error(), "unknown backend") {
			t.Errorf("Open(%q) = %v, want unknown backend", name, err)
		}
	}
	testutil.RequireRoot(t)
	sb, err := sandbox.New()
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	if sb.Name() != sandbox.BackendBwrap && sb.Name() != sandbox.BackendNative {
		t.Errorf("New().Name() = %q", sb.Name())
	}
}

// TestRunBuilderRoot runs non-jailed in a builder root of its own (as an
// unpacked OCI image would be), with the image at /mnt/image.
func TestRunBuilderRoot(t *testing.T) {
	forEachBackend(t, func(t *testing.T, sb sandbox.Sandbox) {
		builder := testutil.BusyboxRoot(t, false)
		if err := os.WriteFile(filepath.Join(builder, "etc/os-release"), []byte("ID=builder\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		image := testutil.BusyboxRoot(t, false)
		before := tree(t, builder)
		script := `
head -n1 /etc/os-release
head -n1 /mnt/image/etc/os-release
touch /etc/x 2>/dev/null && echo builder-writable
echo y > /mnt/image/etc/y
echo t > /tmp/t && echo tmp
test -e /proc/self/status && echo proc
`
		got, stderr, err := shell(t, sb, sandbox.Spec{Root: image, BuilderRoot: builder}, script)
		if err != nil {
			t.Fatalf("Run() = %v (stderr %q)", err, stderr)
		}
		if want := "ID=builder\nID=busybox\ntmp\nproc\n"; got != want {
			t.Errorf("Run() stdout = %q, want %q (stderr %q)", got, want, stderr)
		}
		if d := diff(before, tree(t, builder)); d != "" {
			t.Errorf("builder root changed:\n%s", d)
		}
		if b, err := os.ReadFile(filepath.Join(image, "etc/y")); string(b) != "y\n" {
			t.Errorf("image etc/y = %q, %v; want %q", b, err, "y\n")
		}
	})
}

func TestRunFailsToStart(t *testing.T) {
	forEachBackend(t, func(t *testing.T, sb sandbox.Sandbox) {
		ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
		defer cancel()
		root := testutil.BusyboxRoot(t, false)
		err := sb.Run(ctx, sandbox.Spec{Root: root, Jail: true, Args: []string{"/no/such/command"}, Env: []string{"PATH=/bin"}})
		var ee *sandbox.ExitError
		if err == nil || errors.As(err, &ee) || !strings.Contains(err.Error(), "/no/such/command") {
			t.Errorf("Run() = %v, want an error naming the command, not an exit status", err)
		}
	})
}
