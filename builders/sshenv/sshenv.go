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
	// Jail runs sessions jailed in Root (completion file /tmp/complete);
	// false runs them in the builder environment with the image at
	// /mnt/image (completion file /mnt/image/complete).
	Jail bool
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
	CompleteFile       string // path inside the environment
}

// ErrTimeout is wrapped by the error of Serve when Config.Timeout passed
// before the completion file appeared.
var ErrTimeout = errors.New("sshenv: timeout")

// Paths of the completion file inside the environment (IMS semantics).
const (
	JailCompleteFile = "/tmp/complete"
	HostCompleteFile = sandbox.ImageDir + "/complete"
)

// DefaultListen is the listen address when Config.Listen is empty.
const DefaultListen = "127.0.0.1:0"

// pollInterval is how often the completion file is looked for.
const pollInterval = 200 * time.Millisecond

// Serve listens, calls ready once it is listening, and serves sessions until
// the completion file appears (it then removes the file and returns nil),
// until cfg.Timeout passes (an error wrapping [ErrTimeout]) or until ctx is
// done (ctx.Err()). When it returns, every session's sandbox is killed and
// the listener is closed.
func Serve(ctx context.Context, cfg Config, ready func(Info)) (err error) {
	s, err := newServer(cfg)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "imsbuild-sshenv-")
	if err != nil {
		return fmt.Errorf("sshenv: %w", err)
	}
	defer func() {
		if rerr := os.RemoveAll(tmp); rerr != nil && err == nil {
			err = fmt.Errorf("sshenv: %w", rerr)
		}
	}()
	// /tmp of the environment: writable by every user, sticky.
	if err := os.Chmod(tmp, 0o1777); err != nil {
		return fmt.Errorf("sshenv: %w", err)
	}
	s.tmpDir = tmp
	s.watch = filepath.Join(cfg.Root, "complete")
	if cfg.Jail {
		s.watch = filepath.Join(tmp, "complete")
	}
	// A leftover completion file would end the environment at once.
	if err := removeIfExists(s.watch); err != nil {
		return err
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
		// The file must not stay in the image, whatever ended the environment.
		if rerr := removeIfExists(s.watch); rerr != nil && err == nil {
			err = rerr
		}
	}()
	s.log.Info("listening", "addr", ln.Addr().String(), "jail", cfg.Jail,
		"complete", info.CompleteFile, "host_key", info.HostKeyFingerprint)
	if ready != nil {
		ready(info)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.accept(sctx, ln, &wg)
	}()
	err = s.wait(ctx, info.CompleteFile)
	if err == nil {
		s.log.Info("complete", "file", info.CompleteFile)
	} else {
		s.log.Info("end", "err", err)
	}
	return err
}

// server is the state of one Serve call.
type server struct {
	cfg    Config
	ssh    *ssh.ServerConfig
	signer ssh.Signer
	log    *slog.Logger
	tmpDir string // host dir at /tmp in every session
	watch  string // the completion file on the host

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
	complete := HostCompleteFile
	if s.cfg.Jail {
		complete = JailCompleteFile
	}
	return Info{
		Host:               host,
		Port:               p,
		User:               User,
		HostKeyFingerprint: ssh.FingerprintSHA256(s.signer.PublicKey()),
		Jail:               s.cfg.Jail,
		CompleteFile:       complete,
	}, nil
}

// wait returns nil when the completion file appears, an error wrapping
// ErrTimeout when the timeout passes, or ctx.Err().
func (s *server) wait(ctx context.Context, complete string) error {
	var expired <-chan time.Time
	if s.cfg.Timeout > 0 {
		t := time.NewTimer(s.cfg.Timeout)
		defer t.Stop()
		expired = t.C
	}
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if _, err := os.Lstat(s.watch); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-expired:
			return fmt.Errorf("sshenv: %s did not appear within %s: %w", complete, s.cfg.Timeout, ErrTimeout)
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
