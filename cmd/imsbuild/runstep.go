package main

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/tiered"
	"github.com/imsbuild/imsbuild/engine"
	"github.com/imsbuild/imsbuild/executor"
	"github.com/imsbuild/imsbuild/executor/localproc"
	"github.com/imsbuild/imsbuild/internal/untar"
	"github.com/imsbuild/imsbuild/spec"
)

// newExecutor returns the executor name names; "" is none (steps build in
// this process). "local" runs each step as a child process of this one
// (executor/localproc), the reference executor and the tests'.
// "kubernetes" runs each as a Job (executor/kubernetes), configured by the
// build's executor block and kf.
func newExecutor(name string, cfg *spec.Config, kf kubeFlags) (executor.Executor, error) {
	switch name {
	case "":
		return nil, nil
	case "local":
		return localproc.New("")
	case "kubernetes":
		return newKubernetesExecutor(cfg.Settings.Executor, kf)
	}
	return nil, usageError{fmt.Errorf("--executor %q: want local, kubernetes or none", name)}
}

// remoteFor is the remote cache the executor's steps share: the build's
// write-through target (cache { to } or --cache-to); nil without one,
// which engine.New reports with the fix.
func remoteFor(c *openedCache) *engine.RemoteCache {
	if c.to == nil {
		return nil
	}
	return &engine.RemoteCache{Store: c.to, URL: c.toURL}
}

// newInternalCmd is the hidden group of commands imsbuild runs itself.
func newInternalCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:    "internal",
		Short:  "Commands imsbuild runs itself (not for people)",
		Hidden: true,
	}
	cmd.AddCommand(newRunStepCmd())
	return cmd
}

// maxBundleStream bounds the tar stream of a bundle: its files plus the
// headers of many small ones.
const maxBundleStream = engine.MaxBundleSize + 256<<20

func newRunStepCmd() *cobra.Command {
	var cacheURL, bundle, step, key, workRoot string
	var sshOpts remoteSSH
	cmd := &cobra.Command{
		Use:   "run-step --cache URL --bundle DIGEST --step ID --key KEY",
		Short: "Build one step of a bundle staged in a remote cache (what an executor runs)",
		Long: `run-step is what an executor (a Kubernetes Job, a local process) runs for one step that
the orchestrating imsbuild found missing: it fetches the build's bundle from the remote cache,
unpacks it into scratch space, loads the build as build does, computes the step's key and
refuses to build when it is not KEY (exit 2), builds exactly that step (its parents come
from the remote cache; a missing parent fails) and stores its outputs and action record in
the remote cache. Sensitive variables come as IMSBUILD_VAR_<name>, the HMAC key as
IMSBUILD_HMAC_KEY, the cache credentials as the remote cache reads them.

A step that opens an interactive SSH environment listens on $IMSBUILD_SSH_LISTEN
(set by the executor) and, once it waits for a person, writes one line starting
with "imsbuild-internal: ssh-waiting " and the endpoint as JSON, which the executor
takes out of the log to let people in. An uncacheable step records its result
under --result-key, not KEY.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cache.Digest(bundle).Valid() {
				return usageError{fmt.Errorf("--bundle %q: want sha256:<64 hex>", bundle)}
			}
			if b, err := hex.DecodeString(key); err != nil || len(b) != 32 {
				return usageError{fmt.Errorf("--key %q: want 64 hex digits", key)}
			}
			if cacheURL == "" || step == "" {
				return usageError{errors.New("--cache and --step are required")}
			}
			if k := sshOpts.resultKey; k != "" {
				if b, err := hex.DecodeString(k); err != nil || len(b) != 32 {
					return usageError{fmt.Errorf("--result-key %q: want 64 hex digits", k)}
				}
			}
			for _, kv := range sshOpts.env {
				if name, _, ok := strings.Cut(kv, "="); !ok || name == "" || strings.ContainsAny(kv, "\x00\n") {
					return usageError{fmt.Errorf("--ssh-env %q: want NAME=value on one line", kv)}
				}
			}
			sshOpts.listen = os.Getenv(executor.SSHListenEnv)
			return runStep(cmd.Context(), cmd.OutOrStdout(), cacheURL, cache.Digest(bundle), step, key, workRoot, sshOpts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cacheURL, "cache", "", "the remote cache (s3://… or oci://…) holding the bundle, the parents and the results")
	f.StringVar(&bundle, "bundle", "", "digest of the build's bundle in the remote cache")
	f.StringVar(&step, "step", "", "the step to build, e.g. image.compute or image.compute/prepare")
	f.StringVar(&key, "key", "", "the step's key as the orchestrator computed it")
	f.StringVar(&workRoot, "work-dir", "", "scratch space (default: the system's temporary directory); removed at exit")
	f.StringVar(&sshOpts.resultKey, "result-key", "", "record the result under this key (64 hex), not KEY: an uncacheable step's run")
	f.BoolVar(&sshOpts.interactive, "interactive", false, "the step opens an SSH environment after its customize blocks (build --interactive)")
	f.BoolVar(&sshOpts.debug, "debug-on-failure", false, "a failed step opens a debug SSH environment (build --debug-on-failure)")
	f.StringArrayVar(&sshOpts.keys, "authorized-key", nil, "an authorized_keys line for the SSH environment (build --ssh-public-key)")
	f.DurationVar(&sshOpts.timeout, "ssh-timeout", 0, "the SSH environment's timeout (build --ssh-timeout)")
	f.BoolVar(&sshOpts.imsLayout, "ims-layout", false, "lay a non-jailed SSH environment out as IMS's customize jobs do (imsbuild serve)")
	f.BoolVar(&sshOpts.imsDebugLayout, "ims-debug-layout", false, "lay a debug shell out as IMS's create jobs with enable_debug do (imsbuild serve)")
	f.StringArrayVar(&sshOpts.env, "ssh-env", nil, "K=V added to every SSH session's environment (imsbuild serve's IMS_JOB_ID, …)")
	return cmd
}

// remoteSSH is what run-step takes from the orchestrator's command line
// for the step's SSH environment, and where the executor lets it listen.
type remoteSSH struct {
	resultKey   string
	interactive bool
	debug       bool
	keys        []string
	timeout     time.Duration
	listen      string
	imsLayout   bool
	// imsDebugLayout: engine.Options.IMSDebugLayout.
	imsDebugLayout bool
	env            []string
}

// runStep is run-step's work, in a scratch directory of workRoot.
func runStep(ctx context.Context, out io.Writer, cacheURL string, bundle cache.Digest, step, key, workRoot string, ssh remoteSSH) error {
	remote, err := openRemote(ctx, cacheURL)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp(workRoot, "imsbuild-run-step-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	dir := filepath.Join(work, "bundle")
	if err := fetchBundle(ctx, remote, bundle, dir, maxBundleStream); err != nil {
		return err
	}
	man, err := readBundleManifest(filepath.Join(dir, engine.BundleManifestName))
	if err != nil {
		return err
	}
	buildDir := filepath.Join(dir, engine.BundleBuildDir)
	cfg, diags := spec.LoadContext(ctx, buildDir, spec.Options{
		VarFiles: []string{filepath.Join(dir, engine.BundleVarsName)},
		Environ:  os.Environ(),
	})
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := writeDiagnostics(cfg.Files, diags); err != nil {
		return err
	}
	if diags.HasErrors() {
		return reportedError{exitUsage}
	}
	c, err := openCacheDir(filepath.Join(work, "cache"))
	if err != nil {
		return err
	}
	defer c.close()
	c.tiered = tiered.New(c.Cache, nil, remote, tiered.WithOnWarning(func(err error) {
		fmt.Fprintln(os.Stderr, "imsbuild: warning: remote cache:", err)
	}))
	var hmacKey []byte
	if len(cfg.Sensitive) > 0 {
		if hmacKey, err = hex.DecodeString(os.Getenv(engine.HMACKeyEnv)); err != nil || len(hmacKey) == 0 {
			return usageError{fmt.Errorf("the build has sensitive values: $%s must hold the orchestrator's HMAC key (hex)", engine.HMACKeyEnv)}
		}
	}
	lock, err := buildLock(buildDir, man.Locked)
	if err != nil {
		return err
	}
	store, actions := c.stores()
	e, err := engine.New(cfg, store, actions, engine.Options{
		Environ:    os.Environ(),
		StateDir:   filepath.Join(work, "state"),
		WorkDir:    filepath.Join(work, "work"),
		LogDir:     filepath.Join(work, "logs"),
		StatCache:  c.stat,
		Logger:     slog.Default(),
		Lock:       lock,
		Locked:     man.Locked,
		TrackRepos: man.TrackRepos,
		HMACKey:    hmacKey,
		Events: func(ev engine.Event) {
			switch {
			case ev.Status == engine.StatusLog:
				fmt.Fprintln(out, ev.Line)
			case ev.Status == engine.StatusWaiting && ev.SSH != nil:
				// The one channel back to the orchestrator (executor.SSHMarker).
				fmt.Fprint(out, executor.FormatSSHMarker(*ev.SSH))
			}
		},
		Interactive:       interactiveStep(ssh, step),
		DebugOnFailure:    ssh.debug,
		PublicKeys:        ssh.keys,
		SSHTimeout:        ssh.timeout,
		SSHListenOverride: ssh.listen,
		IMSLayout:         ssh.imsLayout,
		IMSDebugLayout:    ssh.imsDebugLayout,
		SSHEnv:            ssh.env,
		ResultKey:         ssh.resultKey,
		Version:           version,
	})
	if err != nil {
		return usageError{err}
	}
	if err := e.BuildStep(ctx, step, key); err != nil {
		if ctx.Err() != nil {
			return err
		}
		msg := errors.New(e.Redact(err.Error()))
		if _, ok := errors.AsType[*engine.KeyMismatchError](err); ok {
			return usageError{msg}
		}
		if _, ok := errors.AsType[*engine.UnknownTargetError](err); ok {
			return usageError{msg}
		}
		return msg
	}
	// The write-through only warns; the orchestrator needs the record.
	if ssh.resultKey != "" {
		key = ssh.resultKey
	}
	if _, err := remote.Actions().Get(ctx, key); err != nil {
		return fmt.Errorf("step %s built, but its result did not reach %s: %w", step, remote.Name(), err)
	}
	// Last: the orchestrator may end the step here (executor.StoredMarker),
	// before this process has removed its scratch space and exited.
	fmt.Fprint(out, executor.FormatStoredMarker(key))
	return nil
}

// interactiveStep is Options.Interactive for run-step: the step itself
// when the orchestrator's --interactive named it.
func interactiveStep(ssh remoteSSH, step string) []string {
	if !ssh.interactive {
		return nil
	}
	return []string{step}
}

// fetchBundle unpacks bundle from remote into dir, at most limit bytes of
// tar, verifying its digest: a bundle is input from the network, hostile
// until proven.
func fetchBundle(ctx context.Context, remote tiered.Remote, bundle cache.Digest, dir string, limit int64) error {
	rc, err := remote.Open(ctx, bundle)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", bundle, err)
	}
	defer rc.Close()
	gz, err := gzip.NewReader(rc)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", bundle, err)
	}
	lr := &limitedReader{r: gz, n: limit}
	if err := untar.Extract(ctx, lr, dir, untar.Options{}); err != nil {
		return fmt.Errorf("bundle %s: %w", bundle, err)
	}
	// Read to the end: the store verifies the digest at EOF.
	if _, err := io.Copy(io.Discard, lr); err != nil {
		return fmt.Errorf("bundle %s: %w", bundle, err)
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return fmt.Errorf("bundle %s: %w", bundle, err)
	}
	return nil
}

var errBundleTooLarge = errors.New("bundle too large")

// limitedReader fails, rather than ends, past n bytes.
type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errBundleTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// readBundleManifest reads bundle.json, small and of a known version.
func readBundleManifest(path string) (*engine.BundleManifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bundle manifest: %w", err)
	}
	defer f.Close()
	var m engine.BundleManifest
	d := json.NewDecoder(io.LimitReader(f, 1<<16))
	d.DisallowUnknownFields()
	if err := d.Decode(&m); err != nil {
		return nil, fmt.Errorf("bundle manifest: %w", err)
	}
	if m.Version != 1 {
		return nil, fmt.Errorf("bundle manifest: version %d, this imsbuild reads version 1", m.Version)
	}
	return &m, nil
}
