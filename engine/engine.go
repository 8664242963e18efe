package engine

import (
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/builders/steps"
	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/pkgproxy"
	"github.com/imsbuild/imsbuild/executor"
	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/treehash"
	"github.com/imsbuild/imsbuild/lockfile"
	"github.com/imsbuild/imsbuild/spec"
)

// Options configure an Engine. The CLI fills them from flags.
type Options struct {
	Jobs       int      // parallel steps; <1 means 1
	KeepGoing  bool     // after a failure, keep running steps that do not depend on it
	Environ    []string // process environment; only allowlisted names reach steps and keys
	StateDir   string   // small state files (tool versions); default the cache dir
	WorkDir    string   // scratch space for steps, on the cache's filesystem
	LogDir     string   // step logs are kept here
	StatCache  *treehash.StatCache
	Logger     *slog.Logger
	Events     func(Event) // called from many goroutines, serialized by the engine
	Now        func() time.Time
	NewSandbox func() (sandbox.Sandbox, error) // default sandbox.New

	Interactive    []string      // images (label or image.<label>) that open an SSH environment
	DebugOnFailure bool          // open a debug SSH environment in every failed image build
	PublicKeys     []string      // SSH keys for environments opened by flags (authorized_keys lines)
	SSHTimeout     time.Duration // overrides the environments' timeout when > 0
	// SSHListen is where environments opened by DebugOnFailure or
	// Interactive listen ("host:port"); "" is a free loopback port
	// (sshenv.DefaultListen). An interactive block's listen wins.
	// imsbuild serve sets the port its POST answered in connection_info.
	SSHListen string
	// IMSLayout lays non-jailed SSH environments out as IMS's customize
	// jobs do (sshenv.Config.IMSLayout): the image at /mnt/image/image-root,
	// the flag files in /mnt/image. imsbuild serve sets it; HCL builds keep
	// the image at /mnt/image.
	IMSLayout bool
	// IMSDebugLayout lays the debug shell of a failed build out as IMS's
	// create job does (sshenv.Config.IMSBuildLayout): non-jailed, the root
	// at /mnt/image/build/image-root, the flag files in /mnt/image.
	// imsbuild serve sets it for create jobs.
	IMSDebugLayout bool
	// SSHEnv is added to the environment of every SSH session ("K=V"):
	// imsbuild serve sets what IMS's sshd does (IMS_JOB_ID, IMS_ARCH,
	// IMS_DKMS_ENABLED).
	SSHEnv []string

	TrackRepos   bool   // every repository's metadata digest joins the kiwi prepare keys
	KiwiCacheDir string // kiwi's shared package caches; default DefaultKiwiCacheDir
	// BootstrapCacheDir keeps debootstrap results for apt recipes built by
	// the host's kiwi-ng (kiwi.PrepareOptions.BootstrapCache; the program
	// must call kiwi.MaybeRunBootstrapShim); "" always runs debootstrap.
	BootstrapCacheDir string
	// PackageStore and PackageActions hold the package download cache:
	// kiwi prepares fetch packages through a proxy (cache/pkgproxy)
	// that keeps every .deb and .rpm here and serves it to later builds.
	// The local cache, not a remote one. nil: kiwi downloads directly.
	PackageStore   cache.Store
	PackageActions cache.ActionCache
	// NoPrefetch stops kiwi prepares from fetching their packages into
	// the package cache in parallel ahead of kiwi (pkgproxy's Prefetch).
	NoPrefetch bool
	// Derive lets a kiwi prepare start from the cached prepared root of
	// a recipe with fewer packages (steps.Prepare); off, every prepare is
	// fresh.
	Derive     bool
	HTTPClient *http.Client // for repository probes; default http.DefaultClient
	// Lock is the build's package lock (imsbuild.lock.json), nil for
	// none. Each kiwi prepare compares what it resolves with its
	// recipe's entry: a difference is a warning in its log, unless
	// Locked.
	Lock *lockfile.File
	// Locked builds every recipe exactly as locked: its lock entry enters
	// its prepare's key, the package proxy serves only the locked files,
	// and a prepare that resolves anything else fails with the
	// difference. A recipe without an entry fails.
	Locked bool
	// HMACKey stands in keys for the sensitive values of the build
	// (spec.Config.Sensitive); see sensitive.go. Required when there are any.
	HMACKey []byte

	// Check builds the targeted steps again and compares them with their
	// cached results instead of building what is missing (check.go).
	Check bool
	// Signer signs the provenance of every image (imsbuild.signing,
	// --signing-key): any crypto.Signer whose public key is ed25519 or
	// ECDSA P-256 (the CLI's encrypted keys decrypt at their first
	// signature). nil: no provenance.
	Signer crypto.Signer
	// Version is imsbuild's version, recorded in provenances.
	Version string

	// Executor builds every cache miss elsewhere (remote.go) instead of
	// in this process; nil builds here. It needs Remote, and takes no
	// Check, and interactive and debug environments only when it is an
	// executor.SSHExecutor.
	Executor executor.Executor
	// Remote is the remote cache the executor's steps share (bundles,
	// parents, results); the engine's own store must read it too.
	Remote *RemoteCache
	// BuildID labels this build's remote steps; default random.
	BuildID string
	// ResultKey makes BuildStep record its step's result under this key
	// instead of the step's, cacheable or not: the remote run of an
	// uncacheable (interactive) step, whose result the orchestrator reads
	// there and no later build may take by the step's key.
	ResultKey string
	// SSHListenOverride is where SSH environments listen, whatever an
	// interactive block says: a remote step listens where its executor
	// lets people in (executor.SSHListenEnv).
	SSHListenOverride string
}

// Engine plans and runs the steps of one build.
type Engine struct {
	cfg   *spec.Config
	graph *Graph
	store cache.Store
	ac    cache.LockingActionCache
	opts  Options

	emitMu sync.Mutex
	redact func(string) string // masks the build's sensitive values

	epoch    int64 // SOURCE_DATE_EPOCH, parsed once by New
	epochSet bool

	toolCache toolCache

	digestMu sync.Mutex
	digests  map[string]*onceValue // import digests, tool versions and recipe downloads, once per build

	sbOnce sync.Once
	sb     sandbox.Sandbox
	sbErr  error

	mu          sync.Mutex
	results     map[string]*cache.ActionResult // image step id → result
	preimages   map[string]stepPreimage        // step id → its key preimage, for provenance
	provenances map[string]cache.Output        // image step id → its signed provenance
	extState
	keys        map[string]string   // step id → key
	recipeLinks map[string]ims.Link // recipe name → its published recipe.tgz

	checked map[string]bool // check mode: the (sub-)step ids checked
	needed  map[string]bool // check mode: the step ids another selected step needs

	only, onlyKey string // BuildStep: the one step built, and its key

	// newOp, when set, makes the op of every image step (tests' fake steps).
	newOp func(*Step) steps.Op

	proxyMu sync.Mutex
	proxy   *pkgproxy.Proxy // the package cache proxy, once a prepare needs it
}

// New returns an engine for cfg using store and ac, whose Lock keeps two
// builds of one key from doing the work twice.
func New(cfg *spec.Config, store cache.Store, ac cache.LockingActionCache, opts Options) (*Engine, error) {
	g, err := NewGraph(cfg)
	if err != nil {
		return nil, err
	}
	if len(cfg.Sensitive) > 0 && len(opts.HMACKey) == 0 {
		return nil, errors.New("the build has sensitive values but no HMAC key to keep them out of cache keys")
	}
	if err := checkRemote(&opts); err != nil {
		return nil, err
	}
	epoch, epochSet, err := parseSourceDateEpoch(opts.Environ)
	if err != nil {
		return nil, err
	}
	if opts.Jobs < 1 {
		opts.Jobs = 1
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.NewSandbox == nil {
		opts.NewSandbox = sandbox.New
	}
	if opts.StateDir == "" {
		opts.StateDir = cfg.Settings.Cache.Dir
	}
	if opts.WorkDir == "" {
		opts.WorkDir = filepath.Join(opts.StateDir, "work")
	}
	if opts.LogDir == "" {
		opts.LogDir = filepath.Join(opts.StateDir, "logs")
	}
	return &Engine{
		cfg: cfg, graph: g, store: store, ac: ac, opts: opts,
		redact:      spec.NewRedactor(cfg.Sensitive),
		toolCache:   toolCache{path: filepath.Join(opts.StateDir, "tools.json")},
		digests:     map[string]*onceValue{},
		results:     map[string]*cache.ActionResult{},
		preimages:   map[string]stepPreimage{},
		provenances: map[string]cache.Output{},
		recipeLinks: map[string]ims.Link{},
		keys:        map[string]string{},
		epoch:       epoch,
		epochSet:    epochSet,
	}, nil
}

func (e *Engine) emit(ev Event) {
	if e.opts.Events == nil {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = e.opts.Now()
	}
	// Lines come redacted from step logs; errors and reasons may quote
	// anything (a tool's message, a path).
	ev.Line, ev.Error, ev.Reason = e.redact(ev.Line), e.redact(ev.Error), e.redact(ev.Reason)
	e.emitMu.Lock()
	defer e.emitMu.Unlock()
	e.opts.Events(ev)
}

func (e *Engine) sandbox() (sandbox.Sandbox, error) {
	e.sbOnce.Do(func() { e.sb, e.sbErr = e.opts.NewSandbox() })
	return e.sb, e.sbErr
}

// onceValue is a string computed once per build (a digest, a download).
type onceValue struct {
	once  sync.Once
	value string
	err   error
}

// allowedEnv returns the allowlisted environment variables that are set.
func (e *Engine) allowedEnv() map[string]string {
	allow := e.cfg.Settings.Cache.Env
	out := map[string]string{}
	for _, kv := range e.opts.Environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		for _, a := range allow {
			if a == k {
				out[k] = v
			}
		}
	}
	return out
}

func (e *Engine) result(id string) *cache.ActionResult {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.results[id]
}

func (e *Engine) setResult(id, key string, r *cache.ActionResult) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.results[id] = r
	e.keys[id] = key
}

func (e *Engine) key(id string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.keys[id]
}

// StepError is a step that failed; LogPath holds its full output.
type StepError struct {
	Step    string
	LogPath string
	LogTail string
	Err     error
}

func (e *StepError) Error() string { return e.Step + ": " + e.Err.Error() }
func (e *StepError) Unwrap() error { return e.Err }

// ErrUpstreamFailed marks steps skipped because a dependency failed.
var ErrUpstreamFailed = errors.New("a dependency failed")

// sourceDateEpoch returns SOURCE_DATE_EPOCH, and whether it is set.
func (e *Engine) sourceDateEpoch() (int64, bool) { return e.epoch, e.epochSet }

// parseSourceDateEpoch reads SOURCE_DATE_EPOCH from environ (the first, as
// os.Getenv). An empty value counts as unset; anything but a non-negative
// decimal integer is an error: ignoring it would build with another time
// than the one asked for.
func parseSourceDateEpoch(environ []string) (int64, bool, error) {
	for _, kv := range environ {
		v, ok := strings.CutPrefix(kv, "SOURCE_DATE_EPOCH=")
		if !ok {
			continue
		}
		if v == "" {
			return 0, false, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, false, fmt.Errorf("SOURCE_DATE_EPOCH %q: want a non-negative integer of seconds since 1970", v)
		}
		return n, true, nil
	}
	return 0, false, nil
}

// removeAll removes path; a failure is logged, as the caller has nothing
// better to do with it (a busy mount point makes RemoveAll fail; say so,
// never hide it).
func removeAll(log *slog.Logger, path string) {
	if err := os.RemoveAll(path); err != nil {
		log.Warn("cleanup", "path", path, "err", err)
	}
}
