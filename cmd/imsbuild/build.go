package main

import (
	"context"
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

	"github.com/imsbuild/imsbuild/engine"
	"github.com/imsbuild/imsbuild/internal/bytesize"
	"github.com/imsbuild/imsbuild/spec"
)

func newValidateCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "validate [DIR]",
		Short: "Check the build files of DIR and report every error at once",
		Long: `validate decodes every *.ims.hcl file of DIR (default: the current directory), resolves
variables, locals, functions and references, and checks the whole build before any work:
unknown blocks or attributes, wrong types, missing or duplicate names, dangling references,
cycles, bad architectures, sizes and durations. Errors print as file:line:col with the source.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, _ := splitDirArgs(args)
			cfg, err := load(cmd.Context(), g, dir)
			if err != nil {
				return err
			}
			if _, err := engine.NewGraph(cfg); err != nil {
				return usageError{err}
			}
			if !g.json {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %d images, %d recipes, %d publishes: valid\n",
					dir, len(cfg.Images), len(cfg.Recipes), len(cfg.Publishes))
			}
			return nil
		},
	}
}

func newPlanCmd(g *globalFlags) *cobra.Command {
	var explain, trackRepos, locked bool
	cmd := &cobra.Command{
		Use:   "plan [DIR] [TARGET...]",
		Short: "Show which steps are cached and which would build, and why",
		Long: `plan computes the cache key of every step and looks it up without building anything.
With --explain, each step that would build lists the inputs that differ from the last key
recorded for it in this cache (a script, a file, a parent image's output, an attribute…).`,
		Example: `  imsbuild plan --explain examples/busybox
  imsbuild plan --json . image.compute`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, c, targets, err := loadBuild(cmd.Context(), g, args)
			if err != nil {
				return err
			}
			defer c.close()
			lock, err := buildLock(dirOf(args), locked)
			if err != nil {
				return err
			}
			e, err := newEngine(cfg, c, engine.Options{TrackRepos: trackRepos, Lock: lock, Locked: locked})
			if err != nil {
				return err
			}
			plan, err := e.Plan(cmd.Context(), targets, explain)
			if err != nil {
				return targetError(err, e.Redact)
			}
			for _, p := range plan {
				for i, r := range p.Reasons {
					p.Reasons[i] = e.Redact(r)
				}
			}
			out := cmd.OutOrStdout()
			if g.json {
				enc := json.NewEncoder(out)
				for _, p := range plan {
					if err := enc.Encode(p); err != nil {
						return err
					}
				}
				return nil
			}
			for _, p := range plan {
				key := ""
				if p.Key != "" {
					key = "  " + p.Key[:12]
				}
				fmt.Fprintf(out, "%-8s %s%s\n", p.Action, p.Step, key)
				for _, r := range p.Reasons {
					fmt.Fprintf(out, "           %s\n", r)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&explain, "explain", false, "say which inputs changed for each step that would build")
	cmd.Flags().BoolVar(&trackRepos, "track-repos", false, "a change of any package repository's metadata rebuilds the recipes using it")
	cmd.Flags().BoolVar(&locked, "locked", false, "plan the build of imsbuild build --locked (the lock in the recipes' keys)")
	return cmd
}

// targetError redacts err and classifies an unknown target, however
// wrapped, as a usage error.
func targetError(err error, redact func(string) string) error {
	red := errors.New(redact(err.Error()))
	if _, ok := errors.AsType[*engine.UnknownTargetError](err); ok {
		return usageError{red}
	}
	return red
}

func newBuildCmd(g *globalFlags) *cobra.Command {
	var (
		keepGoing   bool
		interactive []string
		debug       bool
		keyFiles    []string
		sshTimeout  time.Duration
		trackRepos  bool
		locked      bool
		check       bool
		signingKey  string
		bootstrap   string
		execName    string
		kf          kubeFlags
		noPrefetch  bool
		derive      bool
	)
	cmd := &cobra.Command{
		Use:   "build [DIR] [TARGET...]",
		Short: "Build the images of DIR (or only TARGETs and what they need) and publish them",
		Long: `build runs every step of the build in dependency order, up to -j steps at a time, taking
each step from the cache when its key is there. TARGETs are step names such as image.compute
or publish.dir.local; a target builds with its dependencies only.

The first failure stops scheduling new steps (--keep-going runs the independent ones too);
a failed step prints the tail of its log and keeps the whole log. Ctrl-C cancels cleanly:
sandboxes are killed, scratch space removed, and no partial cache entry is written.

Interactive customization (IMS customize jobs): --interactive image.x, or an interactive
block, opens an SSH server into the image after its customize blocks; imsbuild prints how to
connect (a "waiting" event with --json) and packs the image once you touch /tmp/complete
(jailed) or /mnt/image/complete (non-jailed). --debug-on-failure opens the same environment in
a failed build root; the step still fails afterwards.

Recipe images run kiwi-ng (as root) in two cached steps, image.x/prepare and image.x. Across
builds on one host, debootstrap results are kept in /var/cache/imsbuild/kiwi/bootstrap and
every downloaded .deb/.rpm in the local cache (a package proxy on 127.0.0.1 that kiwi uses
through http_proxy), so a new recipe that shares packages with earlier ones builds faster
(--bootstrap-cache names another directory for the debootstrap results). While kiwi runs, the
proxy fetches the recipe's package files into that cache six at a time, ahead of debootstrap
and apt, which ask for them one by one: the files of its lock entry, else of its last
prepare, else what the host's apt-get resolves for the description; each is checked against
its repository's sha256 before it is served, so the image is the same as without
(--no-prefetch).

Builds are reproducible: the same inputs give byte-identical artifacts and image ids. Every
file of an image is dated by one epoch, SOURCE_DATE_EPOCH when set (it is then in every key),
else one derived from the inputs (a recipe's newest repository Release date, a parent's
epoch), and image roots are normalized before packing unless normalize = false
(docs/reproducible.md).

--locked builds each recipe exactly as the package lock (imsbuild.lock.json, written by
imsbuild lock) says: the recipe's lock entry enters its prepare's cache key, the package proxy
serves only the locked package files, and a prepare that would install anything else fails
(exit 1, nothing cached or published) naming each package, its locked and its new version.
Without --locked a lock file is only compared: a recipe that now resolves other packages
builds, with a warning in its prepare log.

With a signing key (an imsbuild { signing { key = … } } block, or --signing-key), every
image gets a signed SLSA provenance, published beside it as provenance.intoto.jsonl; an
encrypted key made by cosign generate-key-pair is decrypted with $COSIGN_PASSWORD. Check a
published image with imsbuild verify.

On a terminal, progress is a live display; otherwise plain timestamped lines; --json prints
one event per line (step, status, key, duration_ms, bytes, error).

--check builds the checked steps again without reading their cached results and compares
the new outputs with the cached ones, as Nix's --check does: every image step when no TARGET
is given; image.x checks that image step (a recipe image's from its cached prepared root);
image.x/prepare checks a recipe's kiwi prepare (only when named: it takes minutes). Parents and
prepares that are not checked come from the cache, so only the checked steps run; a remote
cache (--cache-from) serves them and the cached outputs. The cache is left as it was: the
rebuild goes to scratch space, its log to <step>.check.log. Nothing is published; interactive
images, never cached, are skipped. A step
reports "identical" or "DIFFERS" with the outputs that differ: a squashfs (rootfs, prepared
root) as the paths whose content, mode, owner, mtime, xattr, symlink target or type differ, or
that are missing or extra (the first 20 and a count); other outputs by digest and size. With
--json the "differs" event holds them ("check"). Exit status: 0 all identical, 1 a difference
or a failed rebuild, 2 a checked step (or its parent) not yet built, as nothing can be
compared (build it first).`,
		Example: `  imsbuild build examples/busybox
  imsbuild build . image.compute -var release=bookworm
  imsbuild build --json -j 4 --keep-going .
  imsbuild build --locked .
  imsbuild build --interactive image.compute --ssh-public-key ~/.ssh/id_ed25519.pub .
  imsbuild build --check examples/busybox
  COSIGN_PASSWORD=… imsbuild build --signing-key cosign.key examples/busybox`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, c, targets, err := loadBuild(cmd.Context(), g, args)
			if err != nil {
				return err
			}
			defer c.close()
			lock, err := buildLock(dirOf(args), locked)
			if err != nil {
				return err
			}
			signer, err := loadSigner(cfg, signingKey, os.Environ(), c.Dir())
			if err != nil {
				return err
			}
			work, release, err := engine.AcquireWorkDir(filepath.Join(c.Dir(), "work"), slog.Default())
			if err != nil {
				return err
			}
			defer release()
			out := newPrinter(cmd.OutOrStdout(), os.Stderr, g.json)
			out.check = check
			defer out.Close()
			if check && (len(interactive) > 0 || debug) {
				return usageError{errors.New("--check rebuilds unattended: it does not take --interactive or --debug-on-failure")}
			}
			var keys []string
			if len(interactive) > 0 || debug {
				if keys, err = readPublicKeys(keyFiles); err != nil {
					return usageError{err}
				}
			}
			var remote *engine.RemoteCache
			name, err := executorName(execName, cfg)
			if err != nil {
				return err
			}
			if name != "" {
				// Checked before the executor connects anywhere: without
				// a remote cache nothing it builds comes back.
				if remote = remoteFor(c); remote == nil {
					return usageError{fmt.Errorf(`the %s executor builds steps elsewhere and needs a remote cache to share them: set imsbuild { cache { to = "s3://bucket/prefix" } } (or oci://registry/repo), or --cache-to`, name)}
				}
			}
			exec, err := newExecutor(name, cfg, kf)
			if err != nil {
				return err
			}
			if cl, ok := exec.(io.Closer); ok {
				defer cl.Close()
			}
			e, err := newEngine(cfg, c, engine.Options{
				Executor:          exec,
				Remote:            remote,
				Interactive:       interactive,
				DebugOnFailure:    debug,
				PublicKeys:        keys,
				SSHTimeout:        sshTimeout,
				TrackRepos:        trackRepos,
				Lock:              lock,
				Locked:            locked,
				Jobs:              g.jobs,
				BootstrapCacheDir: bootstrap,
				PackageStore:      c.Cache,
				PackageActions:    c.Actions(),
				NoPrefetch:        noPrefetch,
				Derive:            derive,
				KeepGoing:         keepGoing,
				Check:             check,
				WorkDir:           work,
				Events:            out.Event,
				Signer:            signer,
				Version:           version,
			})
			if err != nil {
				return err
			}
			out.SetRedact(e.Redact)
			err = e.Build(cmd.Context(), targets)
			out.Summary(err)
			if c.tiered != nil && !g.json {
				st := c.tiered.Stats()
				fmt.Fprintf(cmd.OutOrStdout(), "remote cache: %d hits; %d blobs downloaded (%s), %d uploaded (%s), %d results uploaded\n",
					st.RemoteHits, st.BlobsDownloaded, bytesize.Format(st.BytesDownloaded), st.BlobsUploaded, bytesize.Format(st.BytesUploaded), st.ActionsUploaded)
			}
			switch {
			case err == nil:
				return nil
			case cmd.Context().Err() != nil:
				return reportedError{exitCancelled}
			}
			if _, ok := errors.AsType[*engine.UnknownTargetError](err); ok {
				return usageError{err}
			}
			if _, ok := errors.AsType[*engine.CheckTargetError](err); ok {
				return usageError{err}
			}
			if check {
				return checkExit(err)
			}
			var se *engine.StepError
			if errors.As(err, &se) || out.Failed() {
				return reportedError{exitFailed}
			}
			return errors.New(e.Redact(err.Error()))
		},
	}
	cmd.Flags().BoolVar(&check, "check", false, "build the checked steps again and compare them with the cache; exit 1 if they differ (nothing is cached or published)")
	cmd.Flags().BoolVar(&keepGoing, "keep-going", false, "after a failure, keep building steps that do not depend on it")
	cmd.Flags().StringArrayVar(&interactive, "interactive", nil, "open an SSH environment in this image after its customize blocks (repeatable)")
	cmd.Flags().BoolVar(&debug, "debug-on-failure", false, "open an SSH environment in the build root of a failed image")
	cmd.Flags().StringArrayVar(&keyFiles, "ssh-public-key", nil, "public key file allowed into SSH environments (default: ~/.ssh/id_*.pub)")
	cmd.Flags().BoolVar(&trackRepos, "track-repos", false, "a change of any package repository's metadata rebuilds the recipes using it (nightly builds)")
	cmd.Flags().BoolVar(&locked, "locked", false, "build every recipe exactly as imsbuild.lock.json says; fail if any package would differ")
	cmd.Flags().StringVar(&signingKey, "signing-key", "", "sign every image's provenance with this private key (PEM or cosign; overrides imsbuild.signing)")
	cmd.Flags().DurationVar(&sshTimeout, "ssh-timeout", 0, "fail an SSH environment nobody completes within this time (default: the block's timeout, else 2h)")
	cmd.Flags().StringVar(&execName, "executor", "", "build every missing step elsewhere: kubernetes (a Job per step), local (a child process per step), none (in this process; the default without an executor block)")
	cmd.Flags().StringVar(&kf.kubeconfig, "kubeconfig", "", "the kubeconfig of the kubernetes executor (overrides the executor block's)")
	cmd.Flags().StringVar(&kf.namespace, "namespace", "", "the namespace of the kubernetes executor's Jobs (overrides the executor block's)")
	cmd.Flags().StringVar(&bootstrap, "bootstrap-cache", engine.DefaultBootstrapCacheDir, "directory of debootstrap results kept for apt recipes; a new one bootstraps from scratch")
	cmd.Flags().BoolVar(&noPrefetch, "no-prefetch", false, "let kiwi download its packages one by one instead of fetching them into the package cache in parallel ahead of it")
	cmd.Flags().BoolVar(&derive, "derive", false, "let a recipe that only adds packages to one built before start from that one's cached prepared root (faster; checked against a fresh build's package set, but its initrd's bytes differ from a fresh build's: docs/caching.md)")
	return cmd
}

// checkExit classifies the outcome of build --check: 1 for a difference or
// a failed rebuild, else 2 when a step had nothing cached to compare with.
// The events have said which.
func checkExit(err error) error {
	var fails, notBuilt bool
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		if _, ok := errors.AsType[*engine.NotBuiltError](err); ok {
			notBuilt = true
		} else {
			fails = true
		}
	}
	walk(err)
	if notBuilt && !fails {
		return reportedError{exitUsage}
	}
	return reportedError{exitFailed}
}

// readPublicKeys reads authorized_keys lines from files, by default the
// user's ~/.ssh/id_*.pub.
func readPublicKeys(files []string) ([]string, error) {
	if len(files) == 0 {
		home, _ := os.UserHomeDir()
		files, _ = filepath.Glob(filepath.Join(home, ".ssh", "id_*.pub"))
	}
	var keys []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--ssh-public-key: %w", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				keys = append(keys, line)
			}
		}
	}
	return keys, nil
}

func newGraphCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "graph [DIR]",
		Short:   "Print the build graph in Graphviz DOT",
		Example: "  imsbuild graph examples/busybox | dot -Tsvg > graph.svg",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, _ := splitDirArgs(args)
			cfg, err := load(cmd.Context(), g, dir)
			if err != nil {
				return err
			}
			gr, err := engine.NewGraph(cfg)
			if err != nil {
				return usageError{err}
			}
			return gr.WriteDOT(cmd.OutOrStdout())
		},
	}
}

func newFmtCmd() *cobra.Command {
	var check bool
	cmd := &cobra.Command{
		Use:   "fmt [DIR]",
		Short: "Rewrite the build files of DIR in canonical HCL style",
		Long:  "fmt rewrites every *.ims.hcl file of DIR canonically. With --check it changes nothing,\nlists the files that are not formatted and exits 1 if there are any.",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, _ := splitDirArgs(args)
			changed, err := spec.Format(dir, check)
			for _, f := range changed {
				fmt.Fprintln(cmd.OutOrStdout(), f)
			}
			var syntax *spec.SyntaxError
			if errors.As(err, &syntax) {
				if err := writeDiagnostics(syntax.Files, syntax.Diags); err != nil {
					return err
				}
				return reportedError{exitUsage}
			}
			if err != nil {
				return usageError{err}
			}
			if check && len(changed) > 0 {
				return reportedError{exitFailed}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&check, "check", false, "only list files that are not formatted; exit 1 if any")
	return cmd
}

// hmacKeyFor returns the local cache's HMAC key when the build has
// sensitive values (only then is the key file made).
func hmacKeyFor(cfg *spec.Config, c *openedCache) ([]byte, error) {
	if len(cfg.Sensitive) == 0 {
		return nil, nil
	}
	return c.HMACKey()
}

// newEngine makes the engine of cfg on the opened caches with opts, plus
// what every command sets alike: the HMAC key, the environment, the state
// directory and the stat cache. An error of engine.New is a usage error.
func newEngine(cfg *spec.Config, c *openedCache, opts engine.Options) (*engine.Engine, error) {
	hmacKey, err := hmacKeyFor(cfg, c)
	if err != nil {
		return nil, err
	}
	opts.HMACKey = hmacKey
	opts.Environ = os.Environ()
	opts.StateDir = c.Dir()
	opts.StatCache = c.stat
	store, actions := c.stores()
	e, err := engine.New(cfg, store, actions, opts)
	if err != nil {
		return nil, usageError{err}
	}
	return e, nil
}

// dirOf is the build directory of args (DIR and targets).
func dirOf(args []string) string {
	dir, _ := splitDirArgs(args)
	return dir
}

// loadBuild loads the build of args (DIR and targets) and opens its caches.
func loadBuild(ctx context.Context, g *globalFlags, args []string) (*spec.Config, *openedCache, []string, error) {
	dir, targets := splitDirArgs(args)
	cfg, err := load(ctx, g, dir)
	if err != nil {
		return nil, nil, nil, err
	}
	c, err := openBuildCache(ctx, g, cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	return cfg, c, targets, nil
}

// openBuildCache opens the local cache of cfg with the remote caches of the
// build's cache block and of --cache-from/--cache-to.
func openBuildCache(ctx context.Context, g *globalFlags, cfg *spec.Config) (*openedCache, error) {
	c, err := openCache(g, cfg)
	if err != nil {
		return nil, err
	}
	from := append(append([]string(nil), cfg.Settings.Cache.From...), g.cacheFrom...)
	to := cfg.Settings.Cache.To
	if g.cacheTo != "" {
		to = g.cacheTo
	}
	if err := withRemotes(ctx, c, from, to); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}
