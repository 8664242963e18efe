package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/gofrs/flock"

	"github.com/imsbuild/imsbuild/builders/builderimage"
	"github.com/imsbuild/imsbuild/builders/kiwi"
	"github.com/imsbuild/imsbuild/builders/pack"
	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/internal/treehash"
	"github.com/imsbuild/imsbuild/publish/s3"
	"github.com/imsbuild/imsbuild/spec"
)

// A kiwi image is two cached sub-steps: prepare (kiwi-ng system prepare of
// the recipe; output: the prepared root as a squashfs) and the image step
// itself (customize + pack, keyed by the prepared root's digest), so a
// squashfs option or customize change never reinstalls packages.

// errPreparePending means the image key needs a prepare that is not cached.
var errPreparePending = errors.New("kiwi prepare not cached yet")

// preparedOutput names the prepared root in a prepare step's outputs.
const preparedOutput = "prepared-root"

func prepareID(s *Step) string { return s.ID + "/prepare" }

// preparePreimage is the key preimage of a kiwi prepare: the recipe tree,
// rendered template, CA certificates, kiwi version and, when tracked, the
// digests of the repositories' metadata.
func (e *Engine) preparePreimage(ctx context.Context, s *Step) (*Preimage, error) {
	r := e.cfg.Recipes[s.Image.Recipe]
	if r == nil {
		return nil, fmt.Errorf("recipe %s not declared", s.Image.Recipe)
	}
	// The kiwi that builds: the host's, or the builder image by digest.
	tools := map[string]string{}
	if r.BuilderImage != "" {
		d, err := builderimage.Resolve(ctx, r.BuilderImage, builderimage.Options{})
		if err != nil {
			return nil, fmt.Errorf("builder image %s: %w", r.BuilderImage, err)
		}
		tools["builder_image"] = d
	} else {
		kv, err := e.toolCache.version(ctx, "kiwi-ng", kiwi.ToolVersion)
		if err != nil {
			return nil, fmt.Errorf("kiwi-ng version: %w", err)
		}
		tools["kiwi-ng"] = kv
	}
	repos := e.recipeRepos(s)
	attrs, err := attrsOf(recipeAttrs(r, repos))
	if err != nil {
		return nil, err
	}
	p := &Preimage{
		Type:    "imsbuild/kiwi-prepare/v1",
		Builder: BuilderVersion,
		Salt:    e.cfg.Settings.Cache.Salt,
		Attrs:   attrs,
		Inputs:  map[string]string{},
		Tools:   tools,
		Env:     e.allowedEnv(),
	}
	src, err := e.recipeSource(ctx, r)
	if err != nil {
		return nil, err
	}
	var d string
	if st, err := os.Stat(src); err == nil && st.IsDir() {
		d, err = treehash.Dir(ctx, src, e.opts.StatCache)
		if err != nil {
			return nil, fmt.Errorf("digest of recipe %s: %w", r.Name, err)
		}
	} else if d, err = treehash.File(ctx, src, e.opts.StatCache); err != nil {
		return nil, fmt.Errorf("digest of recipe %s: %w", r.Name, err)
	}
	p.Inputs["recipe"] = d
	for i, pem := range s.Image.CACertificates {
		p.Inputs[fmt.Sprintf("ca_certificates[%d]", i)] = e.textDigest(pem)
	}
	tracked := repos[:0:0]
	for _, rp := range repos {
		if rp.TrackRepos || e.opts.TrackRepos {
			tracked = append(tracked, rp)
		}
	}
	if len(tracked) > 0 {
		digests, err := kiwi.RepoDigests(ctx, e.httpClient(), tracked)
		if err != nil {
			return nil, err
		}
		for name, d := range digests {
			p.Inputs["repository."+name+".metadata"] = d
		}
	}
	return p, nil
}

func (e *Engine) recipeRepos(s *Step) []*spec.Repository {
	r := e.cfg.Recipes[s.Image.Recipe]
	var out []*spec.Repository
	for _, name := range r.Repositories {
		if rp := e.cfg.Repositories[name]; rp != nil {
			out = append(out, rp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (e *Engine) httpClient() *http.Client {
	if e.opts.HTTPClient != nil {
		return e.opts.HTTPClient
	}
	return http.DefaultClient
}

// runPrepare makes sure the prepare sub-step of kiwi image s has a result,
// from the cache or by running kiwi.
func (e *Engine) runPrepare(ctx context.Context, s *Step) error {
	id := prepareID(s)
	start := time.Now()
	pre, err := e.preparePreimage(ctx, s)
	if err != nil {
		return err
	}
	cached, err := e.runCached(ctx, id, pre, s.ID+".prepare.log", true, func(log io.Writer) (*cache.ActionResult, error) {
		return e.prepare(ctx, s, log)
	})
	if err != nil || cached {
		return err
	}
	// The scheduler reports the image step; the prepare sub-step reports itself.
	var size int64
	for _, o := range e.result(id).Outputs {
		size += o.Size
	}
	e.emit(Event{Step: id, Status: StatusDone, Key: e.key(id), Bytes: size, DurationMS: time.Since(start).Milliseconds()})
	return nil
}

// prepare fetches and renders the recipe, injects CA certificates, waits
// for the repositories and runs kiwi-ng system prepare; the prepared root
// is stored as a squashfs.
func (e *Engine) prepare(ctx context.Context, s *Step, log io.Writer) (*cache.ActionResult, error) {
	r := e.cfg.Recipes[s.Image.Recipe]
	if err := os.MkdirAll(e.opts.WorkDir, 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(e.opts.WorkDir, "prepare-")
	if err != nil {
		return nil, err
	}
	defer removeAll(e.opts.Logger, work)
	desc := filepath.Join(work, "description")
	fmt.Fprintf(log, "fetching recipe %s from %s\n", r.Name, r.Source)
	src, err := e.recipeSource(ctx, r)
	if err != nil {
		return nil, err
	}
	if err := kiwi.FetchRecipe(ctx, src, desc); err != nil {
		return nil, err
	}
	if err := kiwi.Render(desc, r.Template); err != nil {
		return nil, err
	}
	if len(s.Image.CACertificates) > 0 {
		if err := kiwi.InjectCACerts(desc, s.Image.CACertificates); err != nil {
			return nil, err
		}
	}
	if repos := e.recipeRepos(s); len(repos) > 0 {
		fmt.Fprintf(log, "waiting for %d repositories\n", len(repos))
		if err := kiwi.WaitForRepos(ctx, e.httpClient(), repos, log); err != nil {
			return nil, err
		}
	}
	shared, release, err := kiwiSharedCache(e.opts.KiwiCacheDir)
	if err != nil {
		return nil, err
	}
	defer release()
	var builderRoot string
	if r.BuilderImage != "" {
		fmt.Fprintf(log, "unpacking builder image %s\n", r.BuilderImage)
		if builderRoot, _, err = builderimage.Unpack(ctx, r.BuilderImage, filepath.Join(e.opts.StateDir, "builders"), builderimage.Options{}); err != nil {
			return nil, fmt.Errorf("builder image %s: %w", r.BuilderImage, err)
		}
	}
	env := envList(e.allowedEnv())
	proxy, err := e.packageProxy(ctx)
	if err != nil {
		return nil, err
	}
	if proxy != "" {
		// debootstrap's wget and apt-get in the root honour http_proxy;
		// https repositories stay direct.
		env = append(env, "http_proxy="+proxy)
	}
	before := e.packageStats()
	root := filepath.Join(work, "root")
	err = kiwi.Prepare(ctx, kiwi.PrepareOptions{
		BuilderRoot:    builderRoot,
		BootstrapCache: e.opts.BootstrapCacheDir,
		Description:    desc,
		Root:           root,
		Profiles:       r.Profiles,
		SharedCacheDir: shared,
		Env:            env,
		Log:            log,
		KiwiLog:        filepath.Join(work, "kiwi.log"),
	})
	e.logPackageStats(log, before)
	if err != nil {
		if e.debugOnFailure(s) && ctx.Err() == nil {
			fmt.Fprintf(log, "kiwi failed; opening the debug environment on the build root\n")
			if derr := e.sshEnvAt(ctx, s, root, false, true, log); derr != nil {
				fmt.Fprintf(log, "debug environment: %v\n", derr)
			}
		}
		return nil, fmt.Errorf("recipe %s: %w", r.Name, err)
	}
	out := filepath.Join(work, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		return nil, err
	}
	// The prepared root is kept with fast compression: it is unpacked again
	// by the image step, never published.
	arts, err := pack.Pack(ctx, root, out, pack.Options{Compression: "zstd", Level: 1, Env: envList(e.allowedEnv()), Log: io.Discard})
	if err != nil {
		return nil, fmt.Errorf("store prepared root: %w", err)
	}
	d, size, err := e.store.PutFile(ctx, arts[0].Path)
	if err != nil {
		return nil, err
	}
	e.handOver(prepareID(s), root)
	return &cache.ActionResult{Outputs: map[string]cache.Output{
		preparedOutput: {Digest: d, Size: size, MediaType: "application/vnd.imsbuild.prepared-root.squashfs"},
	}}, nil
}

// handOver keeps the root a prepare just made for its image step, which
// then packs it instead of unpacking the stored copy (same tree, seconds
// saved). The root moves out of the prepare's work dir; takeHandover or
// dropHandover removes it.
func (e *Engine) handOver(id, root string) {
	dir, err := os.MkdirTemp(e.opts.WorkDir, "prepared-")
	if err != nil {
		return
	}
	if err := os.Rename(root, filepath.Join(dir, "root")); err != nil {
		removeAll(e.opts.Logger, dir)
		return
	}
	e.mu.Lock()
	e.handovers[id] = dir
	e.mu.Unlock()
}

// takeHandover moves the root handed over by prepare id to root (an empty
// directory) and reports whether it did; if not, root is still there, empty.
func (e *Engine) takeHandover(id, root string) bool {
	dir := e.popHandover(id)
	if dir == "" {
		return false
	}
	defer removeAll(e.opts.Logger, dir)
	if os.Remove(root) != nil {
		return false
	}
	if os.Rename(filepath.Join(dir, "root"), root) != nil {
		_ = os.Mkdir(root, 0o755) // back to the empty dir the caller made
		return false
	}
	return true
}

// dropHandover removes a root handed over by prepare id and not taken.
func (e *Engine) dropHandover(id string) {
	if dir := e.popHandover(id); dir != "" {
		removeAll(e.opts.Logger, dir)
	}
}

func (e *Engine) popHandover(id string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	dir := e.handovers[id]
	delete(e.handovers, id)
	return dir
}

// DefaultKiwiCacheDir holds kiwi's shared caches (repository metadata and
// downloaded packages), kept across builds so a second recipe downloads only
// what is new. It must not be below /tmp: kiwi recreates its parents inside
// the image root.
const DefaultKiwiCacheDir = "/var/cache/imsbuild/kiwi"

// DefaultBootstrapCacheDir keeps debootstrap results across builds (see
// Options.BootstrapCacheDir).
const DefaultBootstrapCacheDir = DefaultKiwiCacheDir + "/bootstrap"

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

// recipeSource returns a local path of r's source: the source itself, or an
// IMS recipe.tgz in S3 (s3://ims/recipes/<id>/recipe.tgz) downloaded, md5
// checked, once per build into the state dir.
func (e *Engine) recipeSource(ctx context.Context, r *spec.Recipe) (string, error) {
	if !strings.HasPrefix(r.Source, "s3://") {
		return r.Source, nil
	}
	e.digestMu.Lock()
	d, ok := e.digests["recipe:"+r.Source]
	if !ok {
		d = &onceValue{}
		e.digests["recipe:"+r.Source] = d
	}
	e.digestMu.Unlock()
	d.once.Do(func() {
		dir := filepath.Join(e.opts.StateDir, "recipes")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			d.err = err
			return
		}
		path := filepath.Join(dir, digestOf(r.Source)[7:19]+".tgz")
		if _, err := s3.Download(ctx, s3.Config{}, r.Source, path, ""); err != nil {
			d.err = fmt.Errorf("recipe %s: %w", r.Name, err)
			return
		}
		d.value = path
	})
	return d.value, d.err
}
