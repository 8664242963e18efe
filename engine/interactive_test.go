package engine

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/builders/sshenv"
	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/spec"
)

// sshRunner answers the waiting event by running commands over real ssh.
// Every command ends the environment (touches its complete or failed file);
// the environment lets the session end first, so ssh gets its exit status.
type sshRunner struct {
	t       *testing.T
	key     string
	command string
	mu      sync.Mutex
	out     string
	err     error
	ran     chan struct{}
	info    *SSHInfo
}

func (r *sshRunner) event(ev Event) {
	if ev.Status != StatusWaiting || ev.SSH == nil {
		return
	}
	info := ev.SSH
	go func() {
		defer close(r.ran)
		cmd := exec.Command("ssh", "-i", r.key, "-p", strconv.Itoa(info.Port),
			"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
			"-o", "ConnectTimeout=10", info.User+"@"+info.Host, r.command)
		out, err := cmd.CombinedOutput()
		r.mu.Lock()
		r.out, r.err, r.info = string(out), err, info
		r.mu.Unlock()
	}()
}

func TestInteractiveSSH(t *testing.T) {
	testutil.RequireTool(t, "ssh")
	f := newFixture(t)
	key, pub := testutil.SSHKey(t)
	f.cfg.Images["compute"].Interactive = &spec.Interactive{PublicKeys: []string{pub}, Listen: "127.0.0.1:0", Timeout: time.Minute, Jail: true}
	r := &sshRunner{t: t, key: key, ran: make(chan struct{}),
		command: "cat /etc/role && echo typed-by-hand > /etc/from-ssh && touch /tmp/complete"}
	rec := &recorder{}
	e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{WorkDir: filepath.Join(f.cache.Dir(), "work", "i"),
		Events: func(ev Event) { rec.add(ev); r.event(ev) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Build(t.Context(), []string{"image.compute"}); err != nil {
		t.Fatalf("Build() = %v", err)
	}
	<-r.ran
	if r.err != nil || !strings.Contains(r.out, "compute") {
		t.Fatalf("ssh = %v, output %q; want the customized /etc/role", r.err, r.out)
	}
	if r.info.CompleteFile != "/tmp/complete" || !r.info.Jail || !strings.HasPrefix(r.info.HostKey, "SHA256:") {
		t.Fatalf("SSH info = %+v", r.info)
	}
	files := unsquash(t, f, e, "image.compute")
	if got := files["etc/from-ssh"]; got != "typed-by-hand\n" {
		t.Fatalf("/etc/from-ssh in the new image = %q, want the file written over ssh", got)
	}
	if _, ok := files["tmp/complete"]; ok {
		t.Fatal("the completion file was packed into the image")
	}
	// Not cached: the result depends on a person.
	entries, _ := f.cache.List(t.Context())
	for _, en := range entries {
		if en.Result.Step == "image.compute" {
			t.Fatal("interactive result was written to the action cache without cache_interactive")
		}
	}
}

// TestInteractiveIMSLayout opens a non-jailed environment in IMS's layout:
// the image at /mnt/image/image-root, the completion file outside it.
func TestInteractiveIMSLayout(t *testing.T) {
	testutil.RequireTool(t, "ssh")
	f := newFixture(t)
	key, pub := testutil.SSHKey(t)
	f.cfg.Images["compute"].Interactive = &spec.Interactive{PublicKeys: []string{pub}, Listen: "127.0.0.1:0", Timeout: time.Minute}
	r := &sshRunner{t: t, key: key, ran: make(chan struct{}),
		command: "cat /mnt/image/image-root/etc/role && echo $IMS_JOB_ID && echo by-ims > /mnt/image/image-root/etc/from-ssh && touch /mnt/image/complete"}
	rec := &recorder{}
	e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{WorkDir: filepath.Join(f.cache.Dir(), "work", "i"),
		IMSLayout: true, SSHEnv: []string{"IMS_JOB_ID=job-1"}, Events: func(ev Event) { rec.add(ev); r.event(ev) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Build(t.Context(), []string{"image.compute"}); err != nil {
		t.Fatalf("Build() = %v", err)
	}
	<-r.ran
	if r.err != nil || !strings.Contains(r.out, "compute\njob-1\n") {
		t.Fatalf("ssh = %v, output %q; want the customized /etc/role and IMS_JOB_ID", r.err, r.out)
	}
	want := SSHInfo{Host: "127.0.0.1", Port: r.info.Port, User: "root", HostKey: r.info.HostKey,
		ImageRoot: "/mnt/image/image-root", CompleteFile: "/mnt/image/complete", FailedFile: "/mnt/image/failed"}
	if *r.info != want {
		t.Fatalf("SSH info = %+v, want %+v", *r.info, want)
	}
	files := unsquash(t, f, e, "image.compute")
	if got := files["etc/from-ssh"]; got != "by-ims\n" {
		t.Fatalf("/etc/from-ssh in the new image = %q, want the file written over ssh", got)
	}
	for _, name := range []string{"complete", "image-root"} {
		if _, ok := files[name]; ok {
			t.Errorf("%s was packed into the image", name)
		}
	}
	if got, want := rec.sequence("image.compute"), []Status{StatusStarted, StatusWaiting, StatusResumed, StatusDone}; !slices.Equal(got, want) {
		t.Errorf("image.compute events = %v, want %v", got, want)
	}
}

// TestInteractiveFailedFile fails the step when the person touches the
// failed file, and packs nothing.
func TestInteractiveFailedFile(t *testing.T) {
	testutil.RequireTool(t, "ssh")
	for _, jail := range []bool{true, false} {
		t.Run("jail="+strconv.FormatBool(jail), func(t *testing.T) {
			f := newFixture(t)
			key, pub := testutil.SSHKey(t)
			f.cfg.Images["compute"].Interactive = &spec.Interactive{PublicKeys: []string{pub}, Listen: "127.0.0.1:0", Timeout: time.Minute, Jail: jail}
			failed := map[bool]string{true: "/tmp/failed", false: "/mnt/image/failed"}[jail]
			r := &sshRunner{t: t, key: key, ran: make(chan struct{}), command: "touch " + failed}
			rec := &recorder{}
			e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{WorkDir: filepath.Join(f.cache.Dir(), "work", "f"),
				IMSLayout: true, Events: func(ev Event) { rec.add(ev); r.event(ev) }})
			if err != nil {
				t.Fatal(err)
			}
			err = e.Build(t.Context(), []string{"image.compute"})
			<-r.ran
			if !errors.Is(err, sshenv.ErrFailed) {
				t.Fatalf("Build() = %v, want sshenv.ErrFailed", err)
			}
			if got, want := rec.sequence("image.compute"), []Status{StatusStarted, StatusWaiting, StatusFailed}; !slices.Equal(got, want) {
				t.Errorf("image.compute events = %v, want %v", got, want)
			}
			if r := e.result("image.compute"); r != nil && len(r.Outputs) > 0 {
				t.Fatalf("image.compute has outputs %v after failed", r.Outputs)
			}
		})
	}
}

func TestInteractiveTimeoutFails(t *testing.T) {
	f := newFixture(t)
	_, pub := testutil.SSHKey(t)
	f.cfg.Images["compute"].Interactive = &spec.Interactive{PublicKeys: []string{pub}, Listen: "127.0.0.1:0", Timeout: 2 * time.Second, Jail: true}
	_, err := f.build(t, t.Context(), Options{}, "image.compute")
	if err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("Build() = %v, want a timeout", err)
	}
}

func TestDebugOnFailureStillFails(t *testing.T) {
	testutil.RequireTool(t, "ssh")
	f := newFixture(t)
	key, pub := testutil.SSHKey(t)
	f.cfg.Images["compute"].Customize[0].Inline = "echo half-done > /etc/half\nexit 4\n"
	r := &sshRunner{t: t, key: key, ran: make(chan struct{}), command: "cat /etc/half && touch /tmp/complete"}
	// SSHListen: the shell listens where the caller said (imsbuild serve
	// answered the port in the job's connection_info already).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{WorkDir: filepath.Join(f.cache.Dir(), "work", "d"),
		DebugOnFailure: true, PublicKeys: []string{pub}, SSHTimeout: time.Minute, Events: r.event, SSHListen: listen})
	if err != nil {
		t.Fatal(err)
	}
	err = e.Build(t.Context(), []string{"image.compute"})
	var se *StepError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "exit status 4") {
		t.Fatalf("Build() = %v, want the script's failure after the debug session", err)
	}
	<-r.ran
	if r.err != nil || !strings.Contains(r.out, "half-done") || !r.info.Debug {
		t.Fatalf("debug ssh = %v, output %q, info %+v; want the failed root", r.err, r.out, r.info)
	}
	if got := net.JoinHostPort(r.info.Host, strconv.Itoa(r.info.Port)); got != listen {
		t.Errorf("debug shell at %s, want Options.SSHListen %s", got, listen)
	}
}

// sequence returns the statuses of step's events but planned and log ones,
// in order.
func (r *recorder) sequence(step string) []Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Status
	for _, ev := range r.events {
		if ev.Step == step && ev.Status != StatusLog && ev.Status != StatusPlanned {
			out = append(out, ev.Status)
		}
	}
	return out
}

// unsquash lists the files of an image's rootfs (path → content for small
// regular files) with unsquashfs.
func unsquash(t *testing.T, f *fixture, e *Engine, id string) map[string]string {
	t.Helper()
	r := e.result(id)
	dir := t.TempDir()
	sq := filepath.Join(dir, "rootfs")
	if err := f.cache.Materialize(t.Context(), r.Outputs["rootfs"].Digest, sq, true); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	if out, err := exec.Command("unsquashfs", "-no-progress", "-d", root, sq).CombinedOutput(); err != nil {
		t.Fatalf("unsquashfs: %v\n%s", err, out)
	}
	files := map[string]string{}
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Size() < 4096 {
			b, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(root, p)
			files[rel] = string(b)
		}
		return nil
	})
	return files
}
