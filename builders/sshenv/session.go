package sshenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/creack/pty"
	"golang.org/x/crypto/ssh"

	"github.com/imsbuild/imsbuild/builders/sandbox"
)

// Shell is the program of shell and exec sessions.
const Shell = "/bin/sh"

// defaultPath is PATH in every session.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// drainTimeout bounds how long the output of a PTY is read after the
// session's program exited.
const drainTimeout = 2 * time.Second

// session is one session channel.
type session struct {
	srv *server
	ch  ssh.Channel
	log *slog.Logger

	env  []string // accepted env requests
	term string   // TERM of the pty-req
	pty  *os.File // PTY master, when the client asked for one
	tty  *os.File // its slave
}

// Payloads of the session requests (RFC 4254 §6).
type (
	envReq struct{ Name, Value string }
	ptyReq struct {
		Term                      string
		Cols, Rows, Width, Height uint32
		Modes                     string
	}
	windowChangeReq struct{ Cols, Rows, Width, Height uint32 }
	execReq         struct{ Command string }
	subsystemReq    struct{ Name string }
	exitStatusMsg   struct{ Status uint32 }
)

// serve handles the channel's requests until the channel is closed, then
// kills the session's program if it still runs.
func (s *session) serve(ctx context.Context, reqs <-chan *ssh.Request) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer s.ch.Close()
	defer s.closePTY()
	var done chan struct{}
	for req := range reqs {
		ok := false
		switch req.Type {
		case "env":
			ok = done == nil && s.setEnv(req.Payload)
		case "pty-req":
			ok = done == nil && s.openPTY(req.Payload)
		case "window-change":
			ok = s.resize(req.Payload)
		case "shell", "exec", "subsystem":
			if done != nil {
				break
			}
			var run func(context.Context) int
			if run, ok = s.program(req.Type, req.Payload); ok {
				done = make(chan struct{})
				_ = req.Reply(true, nil)
				go func() {
					defer close(done)
					s.exit(run(ctx))
				}()
				continue
			}
		}
		if req.WantReply {
			_ = req.Reply(ok, nil)
		}
	}
	cancel()
	if done != nil {
		<-done
	}
}

// setEnv accepts LANG, LC_* and TERM.
func (s *session) setEnv(payload []byte) bool {
	var r envReq
	if ssh.Unmarshal(payload, &r) != nil {
		return false
	}
	if r.Name != "LANG" && r.Name != "TERM" && !strings.HasPrefix(r.Name, "LC_") || strings.ContainsAny(r.Name, "=\x00") {
		s.log.Debug("env refused", "name", r.Name)
		return false
	}
	s.env = append(s.env, r.Name+"="+r.Value)
	return true
}

// openPTY allocates the session's PTY.
func (s *session) openPTY(payload []byte) bool {
	var r ptyReq
	if s.pty != nil || ssh.Unmarshal(payload, &r) != nil {
		return false
	}
	m, t, err := pty.Open()
	if err != nil {
		s.log.Info("pty", "err", err)
		return false
	}
	s.pty, s.tty, s.term = m, t, r.Term
	setSize(m, r.Cols, r.Rows)
	return true
}

// resize applies a window-change request.
func (s *session) resize(payload []byte) bool {
	var r windowChangeReq
	if s.pty == nil || ssh.Unmarshal(payload, &r) != nil {
		return false
	}
	setSize(s.pty, r.Cols, r.Rows)
	return true
}

func setSize(f *os.File, cols, rows uint32) {
	if cols == 0 || rows == 0 || cols > 0xffff || rows > 0xffff {
		return
	}
	_ = pty.Setsize(f, &pty.Winsize{Cols: uint16(cols), Rows: uint16(rows)})
}

// closePTY closes what openPTY opened.
func (s *session) closePTY() {
	if s.tty != nil {
		s.tty.Close()
	}
	if s.pty != nil {
		s.pty.Close()
	}
}

// program returns the function running the program a shell, exec or
// subsystem request asks for; ok is false for a request to refuse.
func (s *session) program(typ string, payload []byte) (run func(context.Context) int, ok bool) {
	switch typ {
	case "shell":
		s.log.Info("shell", "pty", s.pty != nil)
		return func(ctx context.Context) int { return s.runSandbox(ctx, []string{s.loginShell(), "-l"}) }, true
	case "exec":
		var r execReq
		if ssh.Unmarshal(payload, &r) != nil || r.Command == "" {
			return nil, false
		}
		s.log.Info("exec", "command", r.Command, "pty", s.pty != nil)
		return func(ctx context.Context) int { return s.runSandbox(ctx, []string{Shell, "-c", r.Command}) }, true
	case "subsystem":
		var r subsystemReq
		if ssh.Unmarshal(payload, &r) != nil || r.Name != "sftp" {
			return nil, false
		}
		s.log.Info("sftp")
		return s.runSFTP, true
	}
	return nil, false
}

// loginShell is bash when the environment has it, else Shell: a person's
// interactive shell wants job control and line editing, and dash mangles
// its exit status when the terminal's process group lies outside the
// sandbox's pid namespace.
func (s *session) loginShell() string {
	base := "/"
	if s.srv.cfg.Jail {
		base = s.srv.cfg.Root
	}
	p, err := sandbox.ResolveIn(base, "/bin/bash")
	if err != nil {
		return Shell
	}
	if s.srv.cfg.Jail {
		p = filepath.Join(base, p)
	}
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return "/bin/bash"
	}
	return Shell
}

// exit sends the exit status and closes the channel.
func (s *session) exit(code int) {
	_, _ = s.ch.SendRequest("exit-status", false, ssh.Marshal(exitStatusMsg{Status: uint32(code)}))
	_ = s.ch.CloseWrite()
	_ = s.ch.Close()
}

// environ is the environment of the session's program.
func (s *session) environ() []string {
	env := []string{
		"HOME=/root", "USER=root", "LOGNAME=root", "SHELL=" + Shell, "PATH=" + defaultPath,
	}
	env = append(env, s.srv.cfg.Env...)
	env = append(env, s.env...)
	if s.pty != nil && s.term != "" {
		env = append(env, "TERM="+s.term)
	}
	return env
}

// workDir is the starting directory: /root of a jailed image when it has
// one, the image root for a non-jailed environment.
func (s *session) workDir() string {
	if r := s.srv.cfg.imsRoot(); r != "" && !s.srv.cfg.Jail {
		return r
	}
	if !s.srv.cfg.Jail {
		return sandbox.ImageDir
	}
	if fi, err := os.Stat(filepath.Join(s.srv.cfg.Root, "root")); err == nil && fi.IsDir() {
		return "/root"
	}
	return "/"
}

// runSandbox runs args in the sandbox, connected to the channel, and returns
// the exit status to report.
func (s *session) runSandbox(ctx context.Context, args []string) int {
	cfg := s.srv.cfg
	spec := sandbox.Spec{
		Root: cfg.Root, Jail: cfg.Jail, Network: cfg.Network,
		Args: args, Env: s.environ(), Dir: s.workDir(), TmpDir: s.srv.tmpDir, TTY: s.pty != nil,
		Notices: cfg.Log, // the step's log, not the person's terminal
	}
	if spec.Notices == nil {
		spec.Notices = io.Discard
	}
	if s.srv.mntDir != "" {
		// IMS layout: the environment's own directory at /mnt/image, the
		// image inside it.
		spec.Root = s.srv.mntDir
		spec.Binds = []sandbox.Bind{{Source: cfg.Root, Dest: cfg.imsRoot()}}
	}
	var err error
	if s.pty != nil {
		err = s.runPTY(ctx, spec)
	} else {
		err = s.runPipes(ctx, spec)
	}
	var ee *sandbox.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.Code
	case ctx.Err() != nil:
		fmt.Fprintln(s.ch.Stderr(), "imsbuild: the environment was closed")
	default:
		fmt.Fprintf(s.ch.Stderr(), "imsbuild: %v\n", err)
		s.log.Info("run", "err", err)
	}
	return 255
}

// runPipes runs spec with the channel as stdin, stdout and stderr. Stdin
// goes through an os.Pipe so that the end of the program does not wait for
// the client to close its input.
func (s *session) runPipes(ctx context.Context, spec sandbox.Spec) error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("sshenv: %w", err)
	}
	defer r.Close()
	defer w.Close()
	go func() {
		_, _ = io.Copy(w, s.ch)
		w.Close()
	}()
	spec.Stdin, spec.Stdout, spec.Stderr = r, s.ch, s.ch.Stderr()
	return s.srv.cfg.Sandbox.Run(ctx, spec)
}

// runPTY runs spec on the session's PTY and copies between the PTY and the
// channel; all output is sent before it returns.
func (s *session) runPTY(ctx context.Context, spec sandbox.Spec) error {
	go func() { _, _ = io.Copy(s.pty, s.ch) }()
	var out sync.WaitGroup
	out.Go(func() { _, _ = io.Copy(s.ch, s.pty) })
	spec.Stdin, spec.Stdout, spec.Stderr = s.tty, s.tty, s.tty
	err := s.srv.cfg.Sandbox.Run(ctx, spec)
	// The master reads EIO once no slave is open; a process that escaped the
	// sandbox's end must not hold the session forever.
	s.tty.Close()
	s.tty = nil
	drained := make(chan struct{})
	go func() { out.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(drainTimeout):
		s.pty.Close()
		<-drained
	}
	return err
}
