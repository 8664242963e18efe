package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/imsbuild/imsbuild/builders/sshenv"
	"github.com/imsbuild/imsbuild/executor"
)

// StatusWaiting is reported while an SSH environment waits for a person
// (IMS job status waiting_on_user); the event carries the connection info.
const StatusWaiting Status = "waiting"

// StatusResumed is reported when the person completed the SSH environment
// and the step goes on (packs the image): IMS's packaging_artifacts. A
// failed, timed-out or cancelled environment is reported as the step's
// failure instead.
const StatusResumed Status = "resumed"

// SSHInfo tells a person how to reach an interactive or debug
// environment. It is the executor's SSHEndpoint: a remote step reports
// its environment in the same fields, and the executor sets Service and
// DNSName (Kubernetes: the Service, namespace/name, and its cluster DNS
// name), Host and Port then being the Service's.
type SSHInfo = executor.SSHEndpoint

// defaultInteractiveTimeout bounds environments opened by flags, without an
// interactive block to say how long.
const defaultInteractiveTimeout = 2 * time.Hour

// interactive reports whether step s opens an SSH environment after its
// customize blocks: an interactive block, or --interactive naming it.
func (e *Engine) interactive(s *Step) bool {
	if s.Image == nil || s.Kind == KindPublish {
		return false
	}
	return s.Image.Interactive != nil || slices.Contains(e.opts.Interactive, s.ID) || slices.Contains(e.opts.Interactive, s.Image.Label)
}

// cacheable reports whether s may be taken from and written to the action
// cache: an interactive result depends on a person, unless told otherwise.
func (e *Engine) cacheable(s *Step) bool {
	return !e.interactive(s) || s.Image.CacheInteractive
}

// sshEnv opens the SSH environment on root and waits until the person
// touches the completion file (nil), the timeout passes, or ctx ends.
// Sessions are jailed unless the interactive block says jail = false.
func (e *Engine) sshEnv(ctx context.Context, s *Step, root string, debug bool, log io.Writer) error {
	jail := s.Image.Interactive == nil || s.Image.Interactive.Jail
	return e.sshEnvAt(ctx, s, root, jail, debug, log)
}

// sshEnvAt is sshEnv with the jail mode given: a failed kiwi root is
// debugged non-jailed (the root at /mnt/image, or where IMS has it with
// Options.IMSDebugLayout), as IMS does.
func (e *Engine) sshEnvAt(ctx context.Context, s *Step, root string, jail, debug bool, log io.Writer) error {
	cfg := sshenv.Config{Root: root, Jail: jail, IMSLayout: e.opts.IMSLayout, Listen: sshenv.DefaultListen,
		IMSBuildLayout: debug && e.opts.IMSDebugLayout, Timeout: defaultInteractiveTimeout, Log: log}
	if e.opts.SSHListen != "" {
		cfg.Listen = e.opts.SSHListen
	}
	keys := e.opts.PublicKeys
	if in := s.Image.Interactive; in != nil {
		keys = append(slices.Clone(in.PublicKeys), keys...)
		cfg.Timeout, cfg.Network = in.Timeout, in.Network
		if in.Listen != "" {
			cfg.Listen = in.Listen
		}
	}
	if e.opts.SSHListenOverride != "" {
		cfg.Listen = e.opts.SSHListenOverride
	}
	if e.opts.SSHTimeout > 0 {
		cfg.Timeout = e.opts.SSHTimeout
	}
	if len(keys) == 0 {
		return errors.New("no SSH public key for the environment: add an interactive block with public_keys, or pass --ssh-public-key")
	}
	cfg.AuthorizedKeys = keys
	sb, err := e.sandbox()
	if err != nil {
		return err // the sandbox package's errors say "sandbox" already
	}
	cfg.Sandbox = sb
	cfg.Env = append(envList(e.allowedEnv()), e.opts.SSHEnv...)
	err = sshenv.Serve(ctx, cfg, func(info sshenv.Info) {
		what := "interactive"
		if debug {
			what = "debug"
		}
		fmt.Fprintf(log, "%s environment: ssh -p %d %s@%s (host key %s); the image is at %s; touch %s to finish, %s to fail\n",
			what, info.Port, info.User, info.Host, info.HostKeyFingerprint, info.ImageRoot, info.CompleteFile, info.FailedFile)
		e.emit(Event{Step: s.ID, Status: StatusWaiting, SSH: &SSHInfo{
			Host: info.Host, Port: info.Port, User: info.User, HostKey: info.HostKeyFingerprint,
			Jail: info.Jail, ImageRoot: info.ImageRoot, CompleteFile: info.CompleteFile,
			FailedFile: info.FailedFile, Debug: debug,
		}})
	})
	if err != nil {
		return fmt.Errorf("ssh environment: %w", err)
	}
	e.emit(Event{Step: s.ID, Status: StatusResumed})
	return nil
}

// debugOnFailure reports whether a failed build of s opens a debug shell.
func (e *Engine) debugOnFailure(s *Step) bool {
	return s.Image != nil && (s.Image.DebugOnFailure || e.opts.DebugOnFailure)
}
