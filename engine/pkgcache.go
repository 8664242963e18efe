package engine

import (
	"context"
	"fmt"
	"io"

	"github.com/imsbuild/imsbuild/builders/steps"
	"github.com/imsbuild/imsbuild/cache/pkgproxy"
	"github.com/imsbuild/imsbuild/internal/bytesize"
	"github.com/imsbuild/imsbuild/lockfile"
)

// packageProxy returns the URL of the build's package cache proxy, started
// with the first kiwi prepare that needs it, or "" when the engine has no
// package cache (Options.PackageStore).
func (e *Engine) packageProxy(ctx context.Context) (string, error) {
	if e.opts.PackageStore == nil || e.opts.PackageActions == nil {
		return "", nil
	}
	e.proxyMu.Lock()
	defer e.proxyMu.Unlock()
	if e.proxy == nil {
		// The proxy lives as long as the build, not as one step.
		p, err := pkgproxy.Start(context.WithoutCancel(ctx), pkgproxy.Options{
			Store:   e.opts.PackageStore,
			Actions: e.opts.PackageActions,
			Logger:  e.opts.Logger,
		})
		if err != nil {
			return "", fmt.Errorf("package cache: %w", err)
		}
		e.proxy = p
	}
	return e.proxy.URL(), nil
}

// packageStats returns the package cache counters so far.
func (e *Engine) packageStats() pkgproxy.Stats {
	e.proxyMu.Lock()
	defer e.proxyMu.Unlock()
	if e.proxy == nil {
		return pkgproxy.Stats{}
	}
	return e.proxy.Stats()
}

// logPackageStats writes what the package cache served since before.
func (e *Engine) logPackageStats(log io.Writer, before pkgproxy.Stats) {
	now := e.packageStats()
	hits, misses := now.Hits-before.Hits, now.Misses-before.Misses
	if hits+misses == 0 {
		return
	}
	fmt.Fprintf(log, "package cache: %d packages from the cache (%s), %d downloaded (%s)\n",
		hits, bytesize.Format(now.BytesFromCache-before.BytesFromCache),
		misses, bytesize.Format(now.BytesFromUpstream-before.BytesFromUpstream))
}

// closePackageProxy stops the proxy at the end of a build.
func (e *Engine) closePackageProxy() {
	e.proxyMu.Lock()
	defer e.proxyMu.Unlock()
	if e.proxy != nil {
		e.proxy.Close()
		e.proxy = nil
	}
}

// prefetch fetches files into the package cache ahead of a kiwi prepare,
// through the build's proxy.
func (e *Engine) prefetch(ctx context.Context, files []pkgproxy.File) pkgproxy.PrefetchStats {
	e.proxyMu.Lock()
	p := e.proxy
	e.proxyMu.Unlock()
	if p == nil {
		return pkgproxy.PrefetchStats{Skipped: len(files)}
	}
	return p.Prefetch(ctx, files, 0)
}

// lastPackages returns the package list of the last prepare of step id
// the action cache recorded, nil for none (or one it cannot read).
func (e *Engine) lastPackages(ctx context.Context, id string) *lockfile.Recipe {
	key, _, err := e.ac.LastKey(ctx, id)
	if err != nil {
		return nil
	}
	res, err := e.ac.Get(ctx, key)
	if err != nil {
		return nil
	}
	r, err := steps.ReadPackages(ctx, e.store, res)
	if err != nil {
		e.opts.Logger.Debug("package list of the last prepare", "step", id, "err", err)
		return nil
	}
	return r
}
