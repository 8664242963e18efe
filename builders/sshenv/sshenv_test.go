package sshenv_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/builders/sshenv"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// target is a sandbox and image root to run the environment tests on.
type target struct {
	name string
	jail bool
	ims  bool // Config.IMSLayout
	// imsBuild is Config.IMSBuildLayout (IMS's create job debug shell).
	imsBuild bool
	// setup returns the sandbox and the image root, or skips.
	setup func(t *testing.T) (sandbox.Sandbox, string)
	// complete is the command ending the environment; failed the one
	// failing it.
	complete, failed string
	// tmp is a shared directory of the sessions, as a shell expression.
	tmp string
	// image is the image root as seen from a session.
	image string
}

func targets() []target {
	return []target{
		{name: "fake", jail: true, complete: `touch "$SSHENV_TMP/complete"`, failed: `touch "$SSHENV_TMP/failed"`,
			tmp: `"$SSHENV_TMP"`, image: ".",
			setup: func(t *testing.T) (sandbox.Sandbox, string) { return hostSandbox{}, t.TempDir() }},
		{name: "bwrap-jail", jail: true, complete: "touch /tmp/complete", failed: "touch /tmp/failed", tmp: "/tmp", image: "/",
			setup: func(t *testing.T) (sandbox.Sandbox, string) {
				sb := realSandbox(t)
				return sb, testutil.BusyboxRoot(t, false)
			}},
		{name: "bwrap-host", jail: false, complete: "touch /mnt/image/complete", failed: "touch /mnt/image/failed",
			tmp: "/tmp", image: "/mnt/image",
			setup: func(t *testing.T) (sandbox.Sandbox, string) {
				sb := realSandbox(t)
				return sb, testutil.BusyboxRoot(t, false)
			}},
		// IMS's customize layout: the jailed one is the same as bwrap-jail.
		{name: "bwrap-ims-host", jail: false, ims: true, complete: "touch /mnt/image/complete", failed: "touch /mnt/image/failed",
			tmp: "/tmp", image: "/mnt/image/image-root",
			setup: func(t *testing.T) (sandbox.Sandbox, string) {
				sb := realSandbox(t)
				return sb, testutil.BusyboxRoot(t, false)
			}},
		// A customize's root is a parent image mounted under an overlay
		// (builders/overlay): jailed, and IMS's customize layout.
		{name: "bwrap-jail-overlay", jail: true, complete: "touch /tmp/complete", failed: "touch /tmp/failed", tmp: "/tmp", image: "/",
			setup: func(t *testing.T) (sandbox.Sandbox, string) {
				sb := realSandbox(t)
				return sb, overlayRoot(t)
			}},
		{name: "bwrap-ims-host-overlay", jail: false, ims: true, complete: "touch /mnt/image/complete", failed: "touch /mnt/image/failed",
			tmp: "/tmp", image: "/mnt/image/image-root",
			setup: func(t *testing.T) (sandbox.Sandbox, string) {
				sb := realSandbox(t)
				return sb, overlayRoot(t)
			}},
		// IMS's create job debug shell: the root where kiwi left it.
		{name: "bwrap-ims-build-host", jail: false, imsBuild: true, complete: "touch /mnt/image/complete", failed: "touch /mnt/image/failed",
			tmp: "/tmp", image: "/mnt/image/build/image-root",
			setup: func(t *testing.T) (sandbox.Sandbox, string) {
				sb := realSandbox(t)
				return sb, testutil.BusyboxRoot(t, false)
			}},
	}
}

// forEachTarget runs f for every target, with a fresh client key and an
// environment started from cfg.
func forEachTarget(t *testing.T, cfg sshenv.Config, f func(t *testing.T, tg target, e *env, key clientKey, root string)) {
	for _, tg := range targets() {
		t.Run(tg.name, func(t *testing.T) {
			sb, root := tg.setup(t)
			key := newClientKey(t)
			c := cfg
			c.Sandbox, c.Root, c.Jail, c.IMSLayout, c.IMSBuildLayout = sb, root, tg.jail, tg.ims, tg.imsBuild
			c.AuthorizedKeys = append([]string{key.authorized}, cfg.AuthorizedKeys...)
			f(t, tg, start(t, c), key, root)
		})
	}
}

func TestExec(t *testing.T) {
	forEachTarget(t, sshenv.Config{}, func(t *testing.T, tg target, e *env, key clientKey, root string) {
		tests := []struct {
			name       string
			command    string
			wantOut    string
			wantErr    string
			wantStatus int
		}{
			{name: "output and status", command: "echo out; echo err >&2; exit 3", wantOut: "out\n", wantErr: "err\n", wantStatus: 3},
			{name: "quoting", command: `printf '%s\n' "a b" 'c'`, wantOut: "a b\nc\n"},
			{name: "image", command: "cat " + tg.image + "/etc/marker", wantOut: "marker\n"},
			{name: "stdin", command: "wc -l", wantOut: "0\n"},
		}
		if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "etc/marker"), []byte("marker\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				out, errOut, status := e.run(t, key, tc.command)
				if out != tc.wantOut || status != tc.wantStatus || !strings.Contains(errOut, tc.wantErr) {
					t.Errorf("ssh %q = (%q, %q, %d), want (%q, stderr with %q, %d)", tc.command, out, errOut, status, tc.wantOut, tc.wantErr, tc.wantStatus)
				}
			})
		}
		if tg.name == "bwrap-jail" {
			out, _, _ := e.run(t, key, "hostname; cat /etc/os-release | head -n1; pwd")
			if want := "imsbuild\nID=busybox\n/root\n"; out != want {
				t.Errorf("jailed view = %q, want %q", out, want)
			}
		}
	})
}

func TestComplete(t *testing.T) {
	forEachTarget(t, sshenv.Config{}, func(t *testing.T, tg target, e *env, key clientKey, root string) {
		if !strings.HasSuffix(e.info.CompleteFile, "/complete") || e.info.Jail != tg.jail {
			t.Errorf("Info = %+v", e.info)
		}
		_, errOut, status := e.run(t, key, tg.complete)
		// The session that touched the flag ends before the environment
		// cuts the connections (closeGrace): its client sees status 0.
		if status != 0 {
			t.Errorf("ssh %q: status %d, stderr %q", tg.complete, status, errOut)
		}
		if err := e.wait(t); err != nil {
			t.Fatalf("Serve() = %v, want nil", err)
		}
		for _, p := range []string{filepath.Join(root, "complete"), filepath.Join(root, "tmp/complete")} {
			if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s left behind (Lstat: %v)", p, err)
			}
		}
	})
}

// TestChangeKept changes a file of the image in a session and ends the
// environment: the change is in the image root on the host, and neither
// flag file is.
func TestChangeKept(t *testing.T) {
	forEachTarget(t, sshenv.Config{}, func(t *testing.T, tg target, e *env, key clientKey, root string) {
		if tg.name == "fake" {
			return // it runs on the host: it proves nothing about layouts
		}
		if _, errOut, status := e.run(t, key, "mkdir -p "+tg.image+"/etc && echo changed > "+tg.image+"/etc/motd"); status != 0 {
			t.Fatalf("ssh write: status %d, stderr %q", status, errOut)
		}
		if _, errOut, status := e.run(t, key, tg.complete); status != 0 {
			t.Fatalf("ssh %q: status %d, stderr %q", tg.complete, status, errOut)
		}
		if err := e.wait(t); err != nil {
			t.Fatalf("Serve() = %v, want nil", err)
		}
		if got, err := os.ReadFile(filepath.Join(root, "etc/motd")); err != nil || string(got) != "changed\n" {
			t.Errorf("etc/motd in the image = (%q, %v), want \"changed\\n\"", got, err)
		}
		for _, name := range []string{"complete", "failed", "image-root", "tmp/complete"} {
			if _, err := os.Lstat(filepath.Join(root, name)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s in the image root (Lstat: %v), want none", name, err)
			}
		}
	})
}

// TestFailed ends the environment with the failed file: Serve fails with
// ErrFailed and leaves no flag file.
func TestFailed(t *testing.T) {
	forEachTarget(t, sshenv.Config{}, func(t *testing.T, tg target, e *env, key clientKey, root string) {
		if _, errOut, status := e.run(t, key, tg.failed); status != 0 {
			t.Fatalf("ssh %q: status %d, stderr %q", tg.failed, status, errOut)
		}
		err := e.wait(t)
		if !errors.Is(err, sshenv.ErrFailed) || !strings.Contains(err.Error(), e.info.FailedFile) {
			t.Fatalf("Serve() = %v, want ErrFailed naming %s", err, e.info.FailedFile)
		}
		for _, name := range []string{"failed", "tmp/failed"} {
			if _, err := os.Lstat(filepath.Join(root, name)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s left in the image root (Lstat: %v)", name, err)
			}
		}
		if _, err := e.dial0(); err == nil {
			t.Error("still listening after Serve returned")
		}
	})
}

func TestInfo(t *testing.T) {
	signer := newClientKey(t).signer // any key does as a host key
	key := newClientKey(t)
	root := t.TempDir()
	tests := []struct {
		jail, ims, imsBuild                 bool
		imageRoot, completeFile, failedFile string
	}{
		{jail: true, imageRoot: "/", completeFile: "/tmp/complete", failedFile: "/tmp/failed"},
		{jail: true, ims: true, imageRoot: "/", completeFile: "/tmp/complete", failedFile: "/tmp/failed"},
		{imageRoot: "/mnt/image", completeFile: "/mnt/image/complete", failedFile: "/mnt/image/failed"},
		{ims: true, imageRoot: "/mnt/image/image-root", completeFile: "/mnt/image/complete", failedFile: "/mnt/image/failed"},
		{imsBuild: true, imageRoot: "/mnt/image/build/image-root", completeFile: "/mnt/image/complete", failedFile: "/mnt/image/failed"},
		{ims: true, imsBuild: true, imageRoot: "/mnt/image/build/image-root", completeFile: "/mnt/image/complete", failedFile: "/mnt/image/failed"},
		{jail: true, imsBuild: true, imageRoot: "/", completeFile: "/tmp/complete", failedFile: "/tmp/failed"},
	}
	for _, tc := range tests {
		e := start(t, sshenv.Config{AuthorizedKeys: []string{key.authorized}, Sandbox: hostSandbox{},
			Root: root, Jail: tc.jail, IMSLayout: tc.ims, IMSBuildLayout: tc.imsBuild, HostKey: signer})
		want := sshenv.Info{Host: "127.0.0.1", Port: e.info.Port, User: "root",
			HostKeyFingerprint: ssh.FingerprintSHA256(signer.PublicKey()), Jail: tc.jail,
			ImageRoot: tc.imageRoot, CompleteFile: tc.completeFile, FailedFile: tc.failedFile}
		if e.info != want || e.info.Port == 0 {
			t.Errorf("Info = %+v, want %+v", e.info, want)
		}
		// The real client sees the same host key.
		cmd := e.ssh(t, key, "true")
		cmd.Args = append(cmd.Args[:1], append([]string{"-v"}, cmd.Args[1:]...)...)
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), want.HostKeyFingerprint) {
			t.Errorf("ssh -v output lacks %s:\n%s", want.HostKeyFingerprint, out)
		}
	}
}

func TestWrongKey(t *testing.T) {
	key, other := newClientKey(t), newClientKey(t)
	e := start(t, sshenv.Config{AuthorizedKeys: []string{key.authorized}, Sandbox: hostSandbox{}, Root: t.TempDir()})
	out, errOut, status := e.run(t, other, "echo in")
	if status != 255 || out != "" || !strings.Contains(errOut, "Permission denied (publickey)") {
		t.Errorf("ssh with another key = (%q, %q, %d), want Permission denied (publickey), 255", out, errOut, status)
	}
}

func TestTimeout(t *testing.T) {
	forEachTarget(t, sshenv.Config{Timeout: 3 * time.Second}, func(t *testing.T, tg target, e *env, key clientKey, root string) {
		// The quotes keep the marker out of the ssh client's command line.
		n := strconv.Itoa(os.Getpid() % 1000)
		marker := "sleep 4" + n + ".5"
		cmd := e.ssh(t, key, "exec sleep 4''"+n+".5")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		clientDone := make(chan error, 1)
		go func() { clientDone <- cmd.Wait() }()
		eventually(t, "the session's process", func() bool { return len(testutil.ProcessesMatching(t, marker)) > 0 })
		err := e.wait(t)
		if !errors.Is(err, sshenv.ErrTimeout) {
			t.Fatalf("Serve() = %v, want ErrTimeout", err)
		}
		if ps := testutil.ProcessesMatching(t, marker); len(ps) > 0 {
			t.Errorf("processes left after Serve: %v", ps)
		}
		select {
		case <-clientDone:
		case <-time.After(testTimeout):
			t.Fatal("ssh client still connected")
		}
	})
}

func TestCancel(t *testing.T) {
	forEachTarget(t, sshenv.Config{}, func(t *testing.T, tg target, e *env, key clientKey, root string) {
		n := strconv.Itoa(os.Getpid() % 1000)
		marker := "sleep 5" + n + ".5"
		cmd := e.ssh(t, key, "exec sleep 5''"+n+".5")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Wait() }()
		eventually(t, "the session's process", func() bool { return len(testutil.ProcessesMatching(t, marker)) > 0 })
		e.cancel()
		if err := e.wait(t); !errors.Is(err, context.Canceled) {
			t.Fatalf("Serve() = %v, want context.Canceled", err)
		}
		if ps := testutil.ProcessesMatching(t, marker); len(ps) > 0 {
			t.Errorf("processes left after Serve: %v", ps)
		}
		if _, err := e.dial0(); err == nil {
			t.Error("still listening after Serve returned")
		}
	})
}

func TestConcurrentSessions(t *testing.T) {
	forEachTarget(t, sshenv.Config{}, func(t *testing.T, tg target, e *env, key clientKey, root string) {
		// A waits for a file only B creates: both must run at once, and
		// sessions share /tmp.
		a := e.ssh(t, key, "while [ ! -e "+tg.tmp+"/flag ]; do sleep 0.05; done; echo A")
		aOut := &testutil.SyncBuffer{}
		a.Stdout = aOut
		if err := a.Start(); err != nil {
			t.Fatal(err)
		}
		aDone := make(chan error, 1)
		go func() { aDone <- a.Wait() }()
		out, errOut, status := e.run(t, key, "touch "+tg.tmp+"/flag; echo B")
		if out != "B\n" || status != 0 {
			t.Errorf("session B = (%q, %q, %d), want (\"B\\n\", 0)", out, errOut, status)
		}
		select {
		case err := <-aDone:
			if err != nil || aOut.String() != "A\n" {
				t.Errorf("session A = (%q, %v), want (\"A\\n\", nil)", aOut.String(), err)
			}
		case <-time.After(testTimeout):
			t.Fatal("session A did not end")
		}
	})
}

func TestSCP(t *testing.T) {
	forEachTarget(t, sshenv.Config{}, func(t *testing.T, tg target, e *env, key clientKey, root string) {
		scp := testutil.RequireTool(t, "scp")
		src := filepath.Join(t.TempDir(), "motd")
		if err := os.WriteFile(src, []byte("hello from scp\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		dir := "/"
		if !tg.jail {
			dir = tg.image + "/"
		}
		args := append(append([]string{"-s"}, e.sshArgs(key)...), "-P", strconv.Itoa(e.info.Port),
			src, "root@"+e.info.Host+":"+dir+"etc/motd")
		cmd := execTool(t, scp, args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("scp -s: %v\n%s", err, out)
		}
		got, err := os.ReadFile(filepath.Join(root, "etc/motd"))
		if err != nil || string(got) != "hello from scp\n" {
			t.Errorf("etc/motd in root = (%q, %v), want the copied file", got, err)
		}
		// And back.
		back := filepath.Join(t.TempDir(), "back")
		args[len(args)-2], args[len(args)-1] = "root@"+e.info.Host+":"+dir+"etc/motd", back
		if out, err := execTool(t, scp, args...).CombinedOutput(); err != nil {
			t.Fatalf("scp -s back: %v\n%s", err, out)
		}
		if got, err := os.ReadFile(back); err != nil || string(got) != "hello from scp\n" {
			t.Errorf("copied back = (%q, %v)", got, err)
		}
	})
}

func TestPTY(t *testing.T) {
	forEachTarget(t, sshenv.Config{}, func(t *testing.T, tg target, e *env, key clientKey, root string) {
		sess, err := e.dial(t, key).NewSession()
		if err != nil {
			t.Fatal(err)
		}
		if err := sess.RequestPty("xterm-test", 40, 100, ssh.TerminalModes{ssh.ECHO: 0}); err != nil {
			t.Fatalf("RequestPty() = %v", err)
		}
		stdin, err := sess.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := sess.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		out := readInto(stdout)
		if err := sess.Shell(); err != nil {
			t.Fatalf("Shell() = %v", err)
		}
		say := func(line, want string) {
			t.Helper()
			if _, err := stdin.Write([]byte(line + "\n")); err != nil {
				t.Fatal(err)
			}
			eventually(t, want+" after "+line, func() bool { return strings.Contains(out.String(), want) })
		}
		say("stty size | sed 's/^/size=/'", "size=40 100")
		if err := sess.WindowChange(50, 132); err != nil {
			t.Fatalf("WindowChange() = %v", err)
		}
		// The window-change request and the next command travel apart (a
		// request and channel data), so ask again until the resize lands.
		eventually(t, "size=50 132 after a window change", func() bool {
			if strings.Contains(out.String(), "size=50 132") {
				return true
			}
			if _, err := stdin.Write([]byte("stty size | sed 's/^/size=/'\n")); err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond)
			return strings.Contains(out.String(), "size=50 132")
		})
		say("echo term=$TERM", "term=xterm-test")
		say("exit 7", "")
		var ee *ssh.ExitError
		if err := sess.Wait(); !errors.As(err, &ee) || ee.ExitStatus() != 7 {
			t.Errorf("Wait() = %v, want exit status 7", err)
		}
	})
}

func TestSessionRequests(t *testing.T) {
	key := newClientKey(t)
	e := start(t, sshenv.Config{AuthorizedKeys: []string{key.authorized}, Sandbox: hostSandbox{}, Root: t.TempDir(),
		Env: []string{"FROM_CONFIG=yes"}})
	c := e.dial(t, key)
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	for name, want := range map[string]bool{"LANG": true, "LC_ALL": true, "TERM": true, "FOO": false, "PATH": false, "LD_PRELOAD": false} {
		if err := sess.Setenv(name, "v-"+name); (err == nil) != want {
			t.Errorf("Setenv(%s) = %v, want accepted %v", name, err, want)
		}
	}
	out, err := sess.Output(`echo "$LANG $LC_ALL $TERM ${FOO-unset} $FROM_CONFIG $HOME"`)
	if want := "v-LANG v-LC_ALL v-TERM unset yes /root\n"; err != nil || string(out) != want {
		t.Errorf("Output() = (%q, %v), want %q", out, err, want)
	}
	if _, err := c.Dial("tcp", net127(e)); err == nil {
		t.Error("port forwarding allowed")
	}
	sess2, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess2.Close()
	if err := sess2.RequestSubsystem("nosuch"); err == nil {
		t.Error("unknown subsystem accepted")
	}
}

func TestServeConfigErrors(t *testing.T) {
	key := newClientKey(t)
	ok := sshenv.Config{AuthorizedKeys: []string{key.authorized}, Sandbox: hostSandbox{}, Root: t.TempDir()}
	tests := []struct {
		name   string
		modify func(*sshenv.Config)
		want   string
	}{
		{"no sandbox", func(c *sshenv.Config) { c.Sandbox = nil }, "no sandbox"},
		{"relative root", func(c *sshenv.Config) { c.Root = "img" }, "not an absolute path"},
		{"missing root", func(c *sshenv.Config) { c.Root = "/nonexistent/img" }, "no such file"},
		{"no keys", func(c *sshenv.Config) { c.AuthorizedKeys = nil }, "no authorized keys"},
		{"weak key", func(c *sshenv.Config) { c.AuthorizedKeys = []string{rsa1024} }, "1024 bits"},
		{"bad listen", func(c *sshenv.Config) { c.Listen = "127.0.0.1:99999" }, "invalid port"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.modify(&cfg)
			called := false
			err := sshenv.Serve(t.Context(), cfg, func(sshenv.Info) { called = true })
			if err == nil || !strings.Contains(err.Error(), tc.want) || called {
				t.Errorf("Serve() = %v (ready called: %v), want error with %q", err, called, tc.want)
			}
		})
	}
}
