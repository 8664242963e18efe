package sshenv

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/imsbuild/imsbuild/builders/sandbox"
)

// Config describes one SSH environment.
type Config struct {
	// AuthorizedKeys are authorized_keys lines; only these keys may log in.
	// ed25519 and ECDSA keys (also their FIDO "sk-" forms) and RSA keys of at
	// least 2048 bits are accepted; Serve rejects anything else, and lines
	// with options, with an error naming the line.
	AuthorizedKeys []string
	// Listen is the TCP address to listen on; "" means "127.0.0.1:0".
	Listen string
	// Timeout fails the environment when the completion file has not
	// appeared by then; 0 means no limit.
	Timeout time.Duration
	// Sandbox runs the sessions' commands.
	Sandbox sandbox.Sandbox
	// Root is the image root on the host.
	Root string
	// Jail runs sessions jailed in Root (flag files /tmp/complete and
	// /tmp/failed); false runs them in the builder environment with the
	// image at /mnt/image (flag files /mnt/image/complete and
	// /mnt/image/failed, inside the image).
	Jail bool
	// IMSLayout lays a non-jailed environment out as IMS's customize job
	// does: /mnt/image is a directory of the environment holding the flag
	// files (/mnt/image/complete, /mnt/image/failed) and the image root at
	// /mnt/image/image-root, so the flags never touch the image. Jailed
	// environments are the same in both layouts.
	IMSLayout bool
	// IMSBuildLayout is IMSLayout with the image root at
	// /mnt/image/build/image-root, where kiwi (--target /mnt/image) leaves
	// it and IMS's create job opens its debug shell on a failed build. It
	// implies IMSLayout for non-jailed environments.
	IMSBuildLayout bool
	// Network gives sessions the host network.
	Network bool
	// Env is added to every session's environment ("K=V").
	Env []string
	// HostKey is the server's host key; nil means a fresh ed25519 key.
	HostKey ssh.Signer
	// Log receives one line per connection, session and end; nil discards.
	Log io.Writer
}

// Info tells users how to connect, as IMS's ssh_containers do.
type Info struct {
	Host               string
	Port               int
	User               string
	HostKeyFingerprint string // "SHA256:…", as ssh-keygen -l prints it
	Jail               bool
	ImageRoot          string // where the image root is inside the environment
	CompleteFile       string // path inside the environment
	FailedFile         string // path inside the environment
}

// ErrTimeout is wrapped by the error of Serve when Config.Timeout passed
// before the completion file appeared.
var ErrTimeout = errors.New("sshenv: timeout")

// ErrFailed is wrapped by the error of Serve when the person touched the
// failed file: the environment ends without a result (IMS job status
// error, no image).
var ErrFailed = errors.New("sshenv: marked failed")

// Paths of the flag files inside the environment (IMS semantics).
const (
	JailCompleteFile = "/tmp/complete"
	JailFailedFile   = "/tmp/failed"
	HostCompleteFile = sandbox.ImageDir + "/complete"
	HostFailedFile   = sandbox.ImageDir + "/failed"
	// IMSImageRoot is the image root of a non-jailed environment in the
	// IMS layout.
	IMSImageRoot = sandbox.ImageDir + "/image-root"
	// IMSBuildImageRoot is the image root of a non-jailed environment in
	// the IMS create job's layout (Config.IMSBuildLayout).
	IMSBuildImageRoot = sandbox.ImageDir + "/build/image-root"
)

// imsRoot is where the image root is inside a non-jailed environment in
// one of IMS's layouts, "" when the environment is in imsbuild's.
func (c *Config) imsRoot() string {
	switch {
	case c.IMSBuildLayout:
		return IMSBuildImageRoot
	case c.IMSLayout:
		return IMSImageRoot
	}
	return ""
}

// DefaultListen is the listen address when Config.Listen is empty.
const DefaultListen = "127.0.0.1:0"

// pollInterval is how often the completion file is looked for.
const pollInterval = 200 * time.Millisecond

// Serve listens, calls ready once it is listening, and serves sessions until
// the completion file appears (it then removes the file and returns nil),
// until the failed file appears (an error wrapping [ErrFailed]), until
// cfg.Timeout passes (an error wrapping [ErrTimeout]) or until ctx is done
// (ctx.Err()). When it returns, every session's sandbox is killed, the
// listener is closed and neither flag file is left.
func Serve(ctx context.Context, cfg Config, ready func(Info)) (err error) {
	s, err := newServer(cfg)
	if err != nil {
		return err
	}
	base, err := os.MkdirTemp("", "imsbuild-sshenv-")
	if err != nil {
		return fmt.Errorf("sshenv: %w", err)
	}
	defer func() {
		// Only empty mountpoints are left in base/mnt: the image is bound
		// there inside the sandboxes, never on the host.
		if rerr := os.RemoveAll(base); rerr != nil && err == nil {
			err = fmt.Errorf("sshenv: %w", rerr)
		}
	}()
	if err := s.layout(base); err != nil {
		return err
	}
	// A leftover flag file would end the environment at once.
	for _, f := range []string{s.complete, s.failed} {
		if err := removeIfExists(f); err != nil {
			return err
		}
	}

	addr := cfg.Listen
	if addr == "" {
		addr = DefaultListen
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("sshenv: %w", err)
	}
	info, err := s.info(ln.Addr())
	if err != nil {
		ln.Close()
		return err
	}

	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		ln.Close()
		cancel()
		s.closeConns()
		wg.Wait()
		// The files must not stay in the image, whatever ended the environment.
		for _, f := range []string{s.complete, s.failed} {
			if rerr := removeIfExists(f); rerr != nil && err == nil {
				err = rerr
			}
		}
	}()
	s.log.Info("listening", "addr", ln.Addr().String(), "jail", cfg.Jail, "ims_root", cfg.imsRoot(),
		"complete", info.CompleteFile, "failed", info.FailedFile, "host_key", info.HostKeyFingerprint)
	if ready != nil {
		ready(info)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.accept(sctx, ln, &wg)
	}()
	err = s.wait(ctx, info)
	if err == nil {
		s.log.Info("complete", "file", info.CompleteFile)
	} else {
		s.log.Info("end", "err", err)
	}
	if err == nil || errors.Is(err, ErrFailed) {
		// The session that touched the flag is usually still running
		// (`ssh … touch /tmp/complete` waits for its exit status): let
		// it end before the connections are cut, or its client sees
		// "connection closed" and exits 255.
		ln.Close()
		s.drain(ctx, closeGrace)
	}
	return err
}

// closeGrace bounds how long a completed environment waits for its open
// connections to end by themselves.
const closeGrace = 3 * time.Second

// drain waits until no connection is open, grace passes or ctx ends.
func (s *server) drain(ctx context.Context, grace time.Duration) {
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		open := len(s.conns)
		s.mu.Unlock()
		if open == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-tick.C:
		}
	}
}

// server is the state of one Serve call.
type server struct {
	cfg      Config
	ssh      *ssh.ServerConfig
	signer   ssh.Signer
	log      *slog.Logger
	tmpDir   string // host dir at /tmp in every session
	mntDir   string // host dir at /mnt/image in the IMS layout; "" otherwise
	complete string // the completion file on the host
	failed   string // the failed file on the host

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	done  bool
}

func newServer(cfg Config) (*server, error) {
	if cfg.Sandbox == nil {
		return nil, errors.New("sshenv: no sandbox")
	}
	if !filepath.IsAbs(cfg.Root) {
		return nil, fmt.Errorf("sshenv root %q: not an absolute path", cfg.Root)
	}
	if fi, err := os.Stat(cfg.Root); err != nil {
		return nil, fmt.Errorf("sshenv root: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("sshenv root %s: not a directory", cfg.Root)
	}
	keys, err := ParseAuthorizedKeys(cfg.AuthorizedKeys)
	if err != nil {
		return nil, err
	}
	signer := cfg.HostKey
	if signer == nil {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("sshenv host key: %w", err)
		}
		if signer, err = ssh.NewSignerFromKey(priv); err != nil {
			return nil, fmt.Errorf("sshenv host key: %w", err)
		}
	}
	w := cfg.Log
	if w == nil {
		w = io.Discard
	}
	s := &server{
		cfg:    cfg,
		signer: signer,
		log:    slog.New(slog.NewTextHandler(w, nil)).With("component", "sshenv"),
		conns:  make(map[net.Conn]struct{}),
	}
	s.ssh = &ssh.ServerConfig{
		PublicKeyCallback: newAuthorizedKeys(keys).callback(s.log),
		ServerVersion:     "SSH-2.0-imsbuild",
	}
	s.ssh.AddHostKey(signer)
	return s, nil
}

// info describes the listening environment.
func (s *server) info(addr net.Addr) (Info, error) {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return Info{}, fmt.Errorf("sshenv: %w", err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return Info{}, fmt.Errorf("sshenv: port %q: %w", port, err)
	}
	info := Info{
		Host:               host,
		Port:               p,
		User:               User,
		HostKeyFingerprint: ssh.FingerprintSHA256(s.signer.PublicKey()),
		Jail:               s.cfg.Jail,
		ImageRoot:          sandbox.ImageDir,
		CompleteFile:       HostCompleteFile,
		FailedFile:         HostFailedFile,
	}
	switch {
	case s.cfg.Jail:
		info.ImageRoot, info.CompleteFile, info.FailedFile = "/", JailCompleteFile, JailFailedFile
	case s.cfg.imsRoot() != "":
		info.ImageRoot = s.cfg.imsRoot()
	}
	return info, nil
}

// layout creates the host directories of the environment under base and
// sets where the flag files appear on the host: in the shared /tmp when
// jailed, in the image root in imsbuild's non-jailed layout, and in the
// environment's own /mnt/image in IMS's.
func (s *server) layout(base string) error {
	s.tmpDir = filepath.Join(base, "tmp")
	// /tmp of the environment: writable by every user, sticky.
	if err := os.Mkdir(s.tmpDir, 0o755); err != nil {
		return fmt.Errorf("sshenv: %w", err)
	}
	if err := os.Chmod(s.tmpDir, 0o1777); err != nil {
		return fmt.Errorf("sshenv: %w", err)
	}
	flags := s.cfg.Root
	switch {
	case s.cfg.Jail:
		flags = s.tmpDir
	case s.cfg.imsRoot() != "":
		s.mntDir = filepath.Join(base, "mnt")
		if err := os.Mkdir(s.mntDir, 0o755); err != nil {
			return fmt.Errorf("sshenv: %w", err)
		}
		// The mount point of the image root.
		rel := strings.TrimPrefix(s.cfg.imsRoot(), sandbox.ImageDir+"/")
		if err := os.MkdirAll(filepath.Join(s.mntDir, filepath.FromSlash(rel)), 0o755); err != nil {
			return fmt.Errorf("sshenv: %w", err)
		}
		flags = s.mntDir
	}
	s.complete, s.failed = filepath.Join(flags, "complete"), filepath.Join(flags, "failed")
	return nil
}

// wait returns nil when the completion file appears, an error wrapping
// ErrFailed when the failed file appears (it wins when both do), an error
// wrapping ErrTimeout when the timeout passes, or ctx.Err().
func (s *server) wait(ctx context.Context, info Info) error {
	var expired <-chan time.Time
	if s.cfg.Timeout > 0 {
		t := time.NewTimer(s.cfg.Timeout)
		defer t.Stop()
		expired = t.C
	}
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if _, err := os.Lstat(s.failed); err == nil {
			return fmt.Errorf("sshenv: %s touched: %w", info.FailedFile, ErrFailed)
		}
		if _, err := os.Lstat(s.complete); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-expired:
			return fmt.Errorf("sshenv: %s did not appear within %s: %w", info.CompleteFile, s.cfg.Timeout, ErrTimeout)
		case <-tick.C:
		}
	}
}

// track records c so that closeConns can close it; it reports false (and
// closes c) when the environment is already ending.
func (s *server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		c.Close()
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *server) untrack(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

// closeConns closes every connection and refuses new ones.
func (s *server) closeConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = true
	for c := range s.conns {
		c.Close()
	}
}

// removeIfExists removes the file at p unless it is missing.
func removeIfExists(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("sshenv: %w", err)
	}
	return nil
}
