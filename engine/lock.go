package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/imsbuild/imsbuild/builders/steps"
	"github.com/imsbuild/imsbuild/cache/pkgproxy"
	"github.com/imsbuild/imsbuild/lockfile"
)

// The package lock (lockfile, imsbuild.lock.json): every kiwi prepare
// stores the packages it resolved (steps.PackagesOutput); imsbuild lock
// copies them into the lock file (Resolve), and a build with
// Options.Locked puts each recipe's lock entry into its prepare's key and
// has the prepare resolve exactly the locked packages.

// Resolve runs, or takes from the cache, the kiwi prepare of each recipe
// named (all the build's recipes an image uses when none) and returns the
// packages each resolved, by recipe name. A recipe's prepare is that of
// the first image, by name, built from it. A recipe no image uses is an
// error, as is any failed prepare (after all have run).
func (e *Engine) Resolve(ctx context.Context, recipes []string) (map[string]*lockfile.Recipe, error) {
	defer e.closePackageProxy()
	first := map[string]*Step{} // recipe → its first kiwi image step
	for _, s := range e.graph.Steps {
		if s.Kind != KindKiwi {
			continue
		}
		if f := first[s.Image.Recipe]; f == nil || s.ID < f.ID {
			first[s.Image.Recipe] = s
		}
	}
	if len(recipes) == 0 {
		for r := range first {
			recipes = append(recipes, r)
		}
	}
	slices.Sort(recipes)
	recipes = slices.Compact(recipes)
	var todo []*Step
	for _, r := range recipes {
		s := first[r]
		if s == nil {
			if e.cfg.Recipes[r] == nil {
				return nil, &UnknownTargetError{Target: r, Known: e.recipeNames()}
			}
			return nil, fmt.Errorf("recipe %s: no image is built from it, so nothing resolves its packages", r)
		}
		todo = append(todo, s)
		e.emit(Event{Step: prepareID(s), Status: StatusPlanned})
	}
	out := map[string]*lockfile.Recipe{}
	var errs []error
	for _, s := range todo {
		start := time.Now()
		pkgs, err := e.resolve(ctx, s)
		if err != nil {
			ev := Event{Step: prepareID(s), Status: StatusFailed, Error: err.Error(), DurationMS: time.Since(start).Milliseconds()}
			if se, ok := errors.AsType[*StepError](err); ok {
				ev.LogPath = se.LogPath
			}
			if ctx.Err() != nil {
				ev.Status = StatusCancelled
			}
			e.emit(ev)
			errs = append(errs, err)
			if ctx.Err() != nil {
				return nil, fmt.Errorf("lock cancelled: %w", ctx.Err())
			}
			continue
		}
		out[s.Image.Recipe] = pkgs
	}
	return out, errors.Join(errs...)
}

// resolve runs the prepare of kiwi image s and reads its package list.
func (e *Engine) resolve(ctx context.Context, s *Step) (*lockfile.Recipe, error) {
	ops, err := e.opsOf(s, false)
	if err != nil {
		return nil, err
	}
	if err := e.runPrepare(ctx, s, ops.prepare); err != nil {
		return nil, err
	}
	pkgs, err := steps.ReadPackages(ctx, e.store, e.result(prepareID(s)))
	if err != nil {
		return nil, fmt.Errorf("recipe %s: %w", s.Image.Recipe, err)
	}
	return pkgs, nil
}

func (e *Engine) recipeNames() []string {
	var names []string
	for n := range e.cfg.Recipes {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// lockOf returns the lock entry of recipe name, nil when there is none.
func (e *Engine) lockOf(name string) *lockfile.Recipe {
	if e.opts.Lock == nil {
		return nil
	}
	return e.opts.Lock.Recipes[name]
}

// packageProxyFor gives a kiwi prepare a session of the package cache
// proxy with its hooks, and a function that ends the session and logs
// what the proxy served meanwhile.
func (e *Engine) packageProxyFor(ctx context.Context, hooks pkgproxy.Hooks) (string, func(io.Writer), error) {
	url, err := e.packageProxy(ctx)
	if err != nil || url == "" {
		return url, nil, err
	}
	e.proxyMu.Lock()
	sess, err := e.proxy.Session(hooks)
	e.proxyMu.Unlock()
	if err != nil {
		return "", nil, fmt.Errorf("package cache: %w", err)
	}
	before := e.packageStats()
	return sess.URL(), func(w io.Writer) {
		if err := sess.Close(); err != nil {
			e.opts.Logger.Warn("package cache session", "err", err)
		}
		e.logPackageStats(w, before)
	}, nil
}
