package steps

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gofrs/flock"

	"github.com/imsbuild/imsbuild/builders/builderimage"
	"github.com/imsbuild/imsbuild/builders/kiwi"
	"github.com/imsbuild/imsbuild/builders/pack"
	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/pkgproxy"
	"github.com/imsbuild/imsbuild/internal/treehash"
	"github.com/imsbuild/imsbuild/lockfile"
	"github.com/imsbuild/imsbuild/spec"
)

// DefaultKiwiCacheDir holds kiwi's shared caches (repository metadata and
// downloaded packages), kept across builds so a second recipe downloads only
// what is new. It must not be below /tmp: kiwi recreates its parents inside
// the image root.
const DefaultKiwiCacheDir = "/var/cache/imsbuild/kiwi"

// Prepare is the kiwi prepare sub-step of a recipe image: kiwi-ng system
// prepare of the recipe; its output is the prepared root as a squashfs
// (PreparedOutput). The image step is keyed by that root's digest, so a
// squashfs option or customize change never reinstalls packages.
type Prepare struct {
	Recipe         *spec.Recipe
	Repositories   []*spec.Repository // the recipe's, sorted by name
	CACertificates []string           // PEM texts, injected into the description
	// TrackRepos puts every repository's metadata digest into the key,
	// not only those of repositories that ask for it.
	TrackRepos bool
	HTTPClient *http.Client // repository probes

	KiwiCacheDir      string // "" means DefaultKiwiCacheDir
	BootstrapCacheDir string // kiwi.PrepareOptions.BootstrapCache
	StateDir          string // builder images are unpacked under it

	// RecipeSource returns a local path of the recipe's source (an
	// s3:// source downloaded once per build).
	RecipeSource func(ctx context.Context, r *spec.Recipe) (string, error)
	// PackageProxy returns the URL of a session of the package cache
	// proxy ("" for none) whose package requests go through hooks, and a
	// function that ends the session, logging what it served.
	PackageProxy func(ctx context.Context, hooks pkgproxy.Hooks) (url string, done func(io.Writer), err error)
	// Prefetch, when set, fetches package files into the package cache
	// ahead of kiwi (pkgproxy.Proxy.Prefetch; see startPrefetch).
	// Previous returns the package list of this step's last prepare, nil
	// for none: what to prefetch when there is no lock entry.
	Prefetch func(ctx context.Context, files []pkgproxy.File) pkgproxy.PrefetchStats
	Previous func(ctx context.Context) *lockfile.Recipe
	// Lock is the recipe's entry of the package lock, nil for none. With
	// Locked it enters the key, the package proxy serves only the locked
	// package files, and a prepare that resolves other packages fails
	// (LockMismatchError) before anything is stored; without, a prepare
	// that differs from it only says so in its log.
	Lock   *lockfile.Recipe
	Locked bool
	// DebugShell, when set, serves a debug SSH session on the failed
	// build root (non-jailed, the root at /mnt/image, as IMS does).
	DebugShell func(ctx context.Context, root string, log io.Writer) error
	// Handover receives the prepared root for the image step.
	Handover *Handover
	// SourceDateEpoch, when EpochSet, is the build's SOURCE_DATE_EPOCH;
	// otherwise the prepare's epoch is the newest date of its
	// repositories' metadata (kiwi.ReleaseEpoch).
	SourceDateEpoch int64
	EpochSet        bool
	// Derive lets a prepare start from the cached prepared root of a
	// recipe with fewer packages (derive.go); without it every prepare is
	// fresh.
	Derive bool

	tools map[string]string // Key's, for the derivation family
}

// Key describes the prepare: the recipe tree, rendered template, CA
// certificates, kiwi version (or builder image digest) and, when tracked,
// the digests of the repositories' metadata.
func (o *Prepare) Key(ctx context.Context, k KeyEnv) (*Key, error) {
	r := o.Recipe
	// The kiwi that builds: the host's, or the builder image by digest.
	tools := map[string]string{}
	if r.BuilderImage != "" {
		d, err := builderimage.Resolve(ctx, r.BuilderImage, builderOptions(r.Arch))
		if err != nil {
			return nil, fmt.Errorf("builder image %s: %w", r.BuilderImage, err)
		}
		tools["builder_image"] = d
	} else {
		kv, err := k.ToolVersion(ctx, "kiwi-ng", kiwi.ToolVersion)
		if err != nil {
			return nil, fmt.Errorf("kiwi-ng version: %w", err)
		}
		tools["kiwi-ng"] = kv
	}
	if name, id, err := emulatorTool(ctx, k, r.Arch); err != nil {
		return nil, err
	} else if name != "" {
		tools[name] = id
	}
	o.tools = tools
	key := &Key{
		// v2: the package list output.
		// v3: kiwi runs with SOURCE_DATE_EPOCH and DRACUT_REPRODUCIBLE,
		// and the root is packed at that epoch (the image step's).
		// v4: debootstrap sees a fixed /etc/hostname, not the host's.
		Type:   "imsbuild/kiwi-prepare/v4",
		Attrs:  recipeAttrs(r, o.Repositories),
		Inputs: map[string]string{},
		Tools:  tools,
	}
	src, err := o.RecipeSource(ctx, r)
	if err != nil {
		return nil, err
	}
	var d string
	if st, err := os.Stat(src); err == nil && st.IsDir() {
		d, err = treehash.Dir(ctx, src, k.StatCache)
		if err != nil {
			return nil, fmt.Errorf("digest of recipe %s: %w", r.Name, err)
		}
	} else if d, err = treehash.File(ctx, src, k.StatCache); err != nil {
		return nil, fmt.Errorf("digest of recipe %s: %w", r.Name, err)
	}
	key.Inputs["recipe"] = d
	if o.Locked {
		if o.Lock == nil {
			return nil, fmt.Errorf("recipe %s is not in the lock file (--locked); imsbuild lock adds it", r.Name)
		}
		key.Inputs["lock"] = o.Lock.Digest()
	}
	for i, pem := range o.CACertificates {
		key.Inputs[fmt.Sprintf("ca_certificates[%d]", i)] = k.TextDigest(pem)
	}
	var tracked []*spec.Repository
	for _, rp := range o.Repositories {
		if rp.TrackRepos || o.TrackRepos {
			tracked = append(tracked, rp)
		}
	}
	if len(tracked) > 0 {
		digests, err := kiwi.RepoDigests(ctx, o.httpClient(), tracked)
		if err != nil {
			return nil, err
		}
		for name, d := range digests {
			key.Inputs["repository."+name+".metadata"] = d
		}
	}
	return key, nil
}

func (o *Prepare) httpClient() *http.Client {
	if o.HTTPClient != nil {
		return o.HTTPClient
	}
	return http.DefaultClient
}

// Build fetches and renders the recipe, injects CA certificates, waits for
// the repositories and runs kiwi-ng system prepare; the prepared root is
// stored as a squashfs and handed over to the image step.
func (o *Prepare) Build(ctx context.Context, env Env) (*cache.ActionResult, error) {
	r := o.Recipe
	log := env.Log
	desc := filepath.Join(env.Work, "description")
	fmt.Fprintf(log, "fetching recipe %s from %s\n", r.Name, r.Source)
	src, err := o.RecipeSource(ctx, r)
	if err != nil {
		return nil, err
	}
	if err := kiwi.FetchRecipe(ctx, src, desc); err != nil {
		return nil, err
	}
	if err := kiwi.Render(desc, r.Template); err != nil {
		return nil, err
	}
	if len(o.CACertificates) > 0 {
		if err := kiwi.InjectCACerts(desc, o.CACertificates); err != nil {
			return nil, err
		}
	}
	repoDigests := map[string]string{}
	if len(o.Repositories) > 0 {
		fmt.Fprintf(log, "waiting for %d repositories\n", len(o.Repositories))
		if err := kiwi.WaitForRepos(ctx, o.httpClient(), o.Repositories, log); err != nil {
			return nil, err
		}
		// What the resolution sees, for the lock.
		if repoDigests, err = kiwi.RepoDigests(ctx, o.httpClient(), o.Repositories); err != nil {
			return nil, err
		}
	}
	shared, release, err := kiwiSharedCache(o.KiwiCacheDir)
	if err != nil {
		return nil, err
	}
	defer release()
	var builderRoot string
	if r.BuilderImage != "" {
		fmt.Fprintf(log, "unpacking builder image %s\n", r.BuilderImage)
		if builderRoot, _, err = builderimage.Unpack(ctx, r.BuilderImage, filepath.Join(o.StateDir, "builders"), builderOptions(r.Arch)); err != nil {
			return nil, fmt.Errorf("builder image %s: %w", r.BuilderImage, err)
		}
	}
	epoch := o.SourceDateEpoch
	if !o.EpochSet {
		if epoch, err = kiwi.ReleaseEpoch(ctx, o.httpClient(), o.Repositories); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(log, "source date epoch %d (%s)\n", epoch, time.Unix(epoch, 0).UTC().Format(time.RFC3339))
	// Tools in the root that honour it (initramfs-tools, Python's
	// py_compile) date their output by SOURCE_DATE_EPOCH; dracut (whose
	// `reproducible` is a config setting, not a variable) reads
	// DRACUT_REPRODUCIBLE: sorted cpio without inode numbers, mtimes clamped.
	kenv := append(append([]string(nil), env.Environ...),
		"SOURCE_DATE_EPOCH="+strconv.FormatInt(epoch, 10), "DRACUT_REPRODUCIBLE=1")
	report := func(io.Writer) {}
	var locked *lockfile.Recipe
	if o.Locked {
		locked = o.Lock
	}
	rec := newPackageRecorder(locked)
	proxy := ""
	if o.PackageProxy != nil {
		var done func(io.Writer)
		proxy, done, err = o.PackageProxy(ctx, rec.hooks())
		if err != nil {
			return nil, err
		}
		if proxy != "" {
			// debootstrap's wget and apt-get in the root honour
			// http_proxy; https repositories stay direct.
			kenv = append(kenv, "http_proxy="+proxy)
		}
		if done != nil {
			report = done
		}
	}
	defer func() { report(log) }()
	root := filepath.Join(env.Work, "root")
	if err := ensureEmulator(r.Arch, log); err != nil {
		return nil, err
	}
	// A base to derive from (derive.go), when asked for and the recipe is
	// not locked (its lock is the fresh build's package set already). A
	// fresh prepare of an unlocked recipe is recorded as a base for later
	// --derive builds either way.
	var plan *derivePlan
	var family string
	var fam *kiwi.Family
	if !o.Locked {
		if fam, err = kiwi.DescriptionFamily(desc); err != nil {
			if o.Derive {
				fmt.Fprintf(log, "derive: %v\n", err)
			}
			fam = nil
		} else if family, err = o.deriveFamily(ctx, fam, epoch, env.Environ); err != nil {
			if o.Derive {
				fmt.Fprintf(log, "derive: %v\n", err)
			}
			fam = nil
		} else if o.Derive {
			plan = o.planDerive(ctx, env, desc, family, fam, repoDigests, proxy)
		}
	}
	runKiwi := func(existing bool) error {
		stopPrefetch := func() {}
		if o.PackageProxy != nil && !existing {
			stopPrefetch = o.startPrefetch(ctx, desc, proxy, env.Work, log)
		}
		err := kiwi.Prepare(ctx, kiwi.PrepareOptions{
			TargetArch:      targetArch(r.Arch),
			BuilderRoot:     builderRoot,
			BootstrapCache:  o.BootstrapCacheDir,
			Description:     desc,
			Root:            root,
			Profiles:        r.Profiles,
			SharedCacheDir:  shared,
			Env:             kenv,
			Log:             log,
			KiwiLog:         filepath.Join(env.Work, "kiwi.log"),
			ExistingRoot:    existing,
			BootstrapStatus: filepath.Join(env.Work, "bootstrap-status"),
		})
		stopPrefetch()
		return err
	}
	var pkgs *lockfile.Recipe
	if plan != nil {
		defer plan.model() // nothing runs on in the work dir
		start := time.Now()
		fmt.Fprintf(log, "derive: deriving from base %s, adding %s\n", plan.base.Prepared.Digest, strings.Join(plan.added, " "))
		err := plan.unpackBase(ctx, env, root)
		if err == nil {
			err = runKiwi(true)
		}
		if err == nil && len(rec.refusals()) == 0 {
			pkgs, err = resolvePackages(ctx, root, shared, rec, repoDigests, o.index(log))
		}
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case len(rec.refusals()) > 0:
			err = fmt.Errorf("the package proxy refused %s", strings.Join(rec.refusals(), ", "))
		}
		if err != nil {
			fmt.Fprintf(log, "derive: dropped the derived root, building fresh: %v\n", err)
			pkgs = nil
		} else if !plan.verify(pkgs, log) {
			pkgs = nil
		} else {
			fmt.Fprintf(log, "derive: derived from base %s in %s: %d packages, as a fresh build's\n", plan.base.Prepared.Digest, time.Since(start).Round(time.Millisecond), len(pkgs.Packages))
		}
		if pkgs == nil {
			plan = nil
			if err := os.RemoveAll(root); err != nil {
				return nil, fmt.Errorf("remove the derived root: %w", err)
			}
		}
	}
	if pkgs == nil {
		err = runKiwi(false)
		if refused := rec.refusals(); len(refused) > 0 {
			// The proxy refused what the lock does not hold; kiwi's own
			// error says only that a download failed.
			return nil, lockMismatch(log, r.Name, refused)
		}
		if err != nil {
			if o.DebugShell != nil && ctx.Err() == nil {
				fmt.Fprintf(log, "kiwi failed; opening the debug environment on the build root\n")
				if derr := o.DebugShell(ctx, root, log); derr != nil {
					fmt.Fprintf(log, "debug environment: %v\n", derr)
				}
			}
			return nil, fmt.Errorf("recipe %s: %w", r.Name, err)
		}
		if pkgs, err = resolvePackages(ctx, root, shared, rec, repoDigests, o.index(log)); err != nil {
			return nil, err
		}
	}
	if o.Lock != nil {
		if diff := lockfile.Diff(o.Lock, pkgs); len(diff) > 0 {
			if o.Locked {
				return nil, lockMismatch(log, r.Name, diff)
			}
			fmt.Fprintf(log, "warning: recipe %s resolves other packages than %s (imsbuild lock --update refreshes it):\n  %s\n", r.Name, lockfile.Name, strings.Join(diff, "\n  "))
		}
	}
	fmt.Fprintf(log, "%d packages resolved\n", len(pkgs.Packages))
	pkgOut, err := storePackages(ctx, env.Store, pkgs)
	if err != nil {
		return nil, err
	}
	out := filepath.Join(env.Work, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		return nil, err
	}
	// The prepared root is kept with fast compression: it is unpacked again
	// by the image step, never published.
	// It is dated by the epoch, which the image step reads back from it.
	arts, err := pack.Pack(ctx, root, out, pack.Options{Compression: "zstd", Level: 1, SourceDateEpoch: epoch, Env: env.Environ, Log: io.Discard})
	if err != nil {
		return nil, fmt.Errorf("store prepared root: %w", err)
	}
	d, size, err := env.Store.PutFile(ctx, arts[0].Path)
	if err != nil {
		return nil, err
	}
	outputs := map[string]cache.Output{
		PreparedOutput: {Digest: d, Size: size, MediaType: "application/vnd.imsbuild.prepared-root.squashfs"},
		PackagesOutput: pkgOut,
	}
	if plan != nil {
		if outputs[DerivationOutput], err = storeDerivation(ctx, env.Store, derivationRecord{
			BasePreparedRoot: plan.base.Prepared.Digest, BasePackages: plan.base.Packages.Digest, AddedPackages: plan.added,
		}); err != nil {
			return nil, err
		}
	}
	// This root is a base for the recipes that add to it, given the
	// bootstrap root it started from (a fresh one's, its base's).
	status, haveStatus := cache.Output{}, false
	if plan != nil {
		status, haveStatus = plan.base.BootstrapStatus, true
	} else if status, haveStatus, err = storeStatus(ctx, env.Store, filepath.Join(env.Work, "bootstrap-status")); err != nil {
		return nil, err
	}
	if haveStatus {
		outputs[BootstrapStatusOutput] = status
	}
	if fam != nil && haveStatus {
		if err := recordDeriveBase(deriveIndexDir(o.KiwiCacheDir), family, deriveEntry{
			Prepared: outputs[PreparedOutput], Packages: pkgOut, BootstrapStatus: status, ImagePackages: fam.Packages,
			Repositories: repoDigests, Created: time.Now().UTC(),
		}); err != nil {
			fmt.Fprintf(log, "warning: derive index: %v\n", err)
		}
	}
	o.Handover.give(root)
	return &cache.ActionResult{Outputs: outputs}, nil
}

// index returns the indexFunc of the prepare's repositories: the entries
// of each repository's index (apt Packages, rpm-md primary), the first
// repository by name winning. A
// repository whose index cannot be read is skipped with a warning: its
// packages are then locked without a file digest, unless the proxy saw
// them.
func (o *Prepare) index(log io.Writer) indexFunc {
	return func(ctx context.Context, arches []string, want func(string) bool) map[string]kiwi.IndexEntry {
		out := map[string]kiwi.IndexEntry{}
		for _, rp := range o.Repositories {
			got, err := kiwi.Index(ctx, o.httpClient(), rp, arches, want)
			if err != nil {
				fmt.Fprintf(log, "warning: package lock: %v\n", err)
				continue
			}
			for k, e := range got {
				if _, ok := out[k]; !ok {
					out[k] = e
				}
			}
		}
		return out
	}
}

// kiwiSharedCache takes the first unused shared cache under base (one per
// concurrent kiwi run, each held by a lock file).
func kiwiSharedCache(base string) (string, func(), error) {
	if base == "" {
		base = DefaultKiwiCacheDir
	}
	for i := 0; ; i++ {
		dir := filepath.Join(base, fmt.Sprintf("cache-%d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", nil, fmt.Errorf("kiwi shared cache: %w", err)
		}
		lock := flock.New(dir + ".lock")
		ok, err := lock.TryLock()
		if err != nil {
			return "", nil, fmt.Errorf("kiwi shared cache: %w", err)
		}
		if ok {
			return dir, func() { lock.Unlock() }, nil
		}
	}
}
