package engine

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/imsbuild/imsbuild/builders/steps"
	"github.com/imsbuild/imsbuild/executor"
	"github.com/imsbuild/imsbuild/lockfile"
)

// The engine runs every image step through a steps.Op: the op describes
// what decides its result (steps.Key) and builds it in a steps.Env; the
// engine completes and hashes the key (preimage), locks, looks up and
// records it (runCached), and schedules and reports the steps (Build).

// stepOps are the ops of one image step.
type stepOps struct {
	prepare  steps.Op        // kiwi: the prepare sub-step; nil for other kinds
	image    steps.Op        // the image step itself
	handover *steps.Handover // kiwi: prepare's root for the image; nil-safe
}

// opsOf returns the ops of image step s. forBuild gives a kiwi image a
// handover for the root its prepare makes (a plan builds nothing).
func (e *Engine) opsOf(s *Step, forBuild bool) (stepOps, error) {
	if e.newOp != nil {
		return stepOps{image: e.newOp(s)}, nil
	}
	img := s.Image
	op := &steps.Image{
		Kind:            s.Kind,
		Image:           img,
		Interactive:     e.interactive(s),
		DebugOnFailure:  e.debugOnFailure(s),
		SourceDateEpoch: e.epoch,
		EpochSet:        e.epochSet,
		StateDir:        e.opts.StateDir,
		RemoteDigest:    remoteDigest,
		FetchRemote:     fetchRemote,
		Shell: func(ctx context.Context, root string, debug bool, log io.Writer) error {
			return e.sshEnv(ctx, s, root, debug, log)
		},
	}
	ops := stepOps{image: op}
	switch s.Kind {
	case KindCustomize:
		op.Parent = s.Deps[0].ID
	case KindKiwi:
		r := e.cfg.Recipes[img.Recipe]
		if r == nil {
			return stepOps{}, fmt.Errorf("recipe %s not declared", img.Recipe)
		}
		if img.Arch != "" && img.Arch != r.Arch {
			// An image of another arch than its recipe's (arch set on
			// the image) prepares the recipe for its own arch: one
			// recipe, an x86_64 and an aarch64 image (kiwi's package
			// arch attributes pick what differs).
			rc := *r
			rc.Arch = img.Arch
			r = &rc
		}
		op.Parent = prepareID(s)
		if forBuild {
			ops.handover = steps.NewHandover(e.opts.WorkDir, e.opts.Logger)
			op.Handover = ops.handover
		}
		prep := &steps.Prepare{
			Recipe:            r,
			Repositories:      e.recipeRepos(s),
			CACertificates:    img.CACertificates,
			TrackRepos:        e.opts.TrackRepos,
			HTTPClient:        e.opts.HTTPClient,
			KiwiCacheDir:      e.opts.KiwiCacheDir,
			BootstrapCacheDir: e.opts.BootstrapCacheDir,
			StateDir:          e.opts.StateDir,
			RecipeSource:      e.recipeSource,
			PackageProxy:      e.packageProxyFor,
			Lock:              e.lockOf(r.Name),
			Locked:            e.opts.Locked,
			Handover:          ops.handover,
			SourceDateEpoch:   e.epoch,
			EpochSet:          e.epochSet,
			Derive:            e.opts.Derive,
		}
		if !e.opts.NoPrefetch {
			prep.Prefetch = e.prefetch
			prep.Previous = func(ctx context.Context) *lockfile.Recipe { return e.lastPackages(ctx, prepareID(s)) }
		}
		if e.debugOnFailure(s) {
			prep.DebugShell = func(ctx context.Context, root string, log io.Writer) error {
				return e.sshEnvAt(ctx, s, root, false, true, log)
			}
		}
		ops.prepare = prep
	}
	return ops, nil
}

// preimage asks op for its key and completes it with what every key holds:
// the builder version, the cache salt and the allowlisted environment.
func (e *Engine) preimage(ctx context.Context, op steps.Op) (*Preimage, error) {
	k, err := op.Key(ctx, steps.KeyEnv{
		StatCache:   e.opts.StatCache,
		TextDigest:  e.textDigest,
		ToolVersion: e.toolVersion,
		Once:        e.once,
		Result:      e.result,
		Emulated:    e.emulated(),
	})
	if err != nil {
		return nil, err
	}
	attrs, err := attrsOf(k.Attrs)
	if err != nil {
		return nil, err
	}
	env := e.allowedEnv()
	if e.epochSet {
		// An explicit epoch is every output's time: it is in every key.
		// Unset, each step's epoch follows from its inputs (see
		// steps.Image and steps.Prepare) and keys stay as they were.
		env["SOURCE_DATE_EPOCH"] = strconv.FormatInt(e.epoch, 10)
	}
	return &Preimage{
		Type:      k.Type,
		Builder:   BuilderVersion,
		Salt:      e.cfg.Settings.Cache.Salt,
		Attrs:     attrs,
		Inputs:    k.Inputs,
		Tools:     k.Tools,
		Env:       env,
		Parent:    k.Parent,
		Customize: k.Customize,
	}, nil
}

// emulated is KeyEnv.Emulated: an executor that routes steps by arch
// (executor.ArchRouter) says where a step of an arch runs and so whether
// its key names an emulator; without one, nil keys for this host.
func (e *Engine) emulated() func(context.Context, string) (bool, error) {
	r, ok := e.opts.Executor.(executor.ArchRouter)
	if !ok {
		return nil
	}
	return func(ctx context.Context, arch string) (bool, error) {
		native, err := r.Native(ctx, arch)
		return !native, err
	}
}

// once returns the value of f for name, computed once per build however
// many steps ask (an import's digest, a tool's version).
func (e *Engine) once(name string, f func() (string, error)) (string, error) {
	e.digestMu.Lock()
	d, ok := e.digests[name]
	if !ok {
		d = &onceValue{}
		e.digests[name] = d
	}
	e.digestMu.Unlock()
	d.once.Do(func() { d.value, d.err = f() })
	return d.value, d.err
}

// toolVersion returns the version of tool name: once per build, and
// across builds while the binary stays the same (toolCache).
func (e *Engine) toolVersion(ctx context.Context, name string, probe func(context.Context) (string, error)) (string, error) {
	return e.once("tool:"+name, func() (string, error) {
		return e.toolCache.version(ctx, name, probe)
	})
}
