package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/hashicorp/hcl/v2"
	"golang.org/x/term"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/local"
	"github.com/imsbuild/imsbuild/cache/tiered"
	"github.com/imsbuild/imsbuild/internal/treehash"
	"github.com/imsbuild/imsbuild/spec"
)

// splitDirArgs takes the build directory from the first argument when it
// names a directory (or looks like a path); the rest are targets such as
// image.compute.
func splitDirArgs(args []string) (dir string, targets []string) {
	if len(args) == 0 {
		return ".", nil
	}
	a := args[0]
	if st, err := os.Stat(a); (err == nil && st.IsDir()) || strings.ContainsRune(a, os.PathSeparator) || a == "." || a == ".." {
		return a, args[1:]
	}
	return ".", args
}

// load decodes the build in dir, printing diagnostics. Errors exit 2; a
// cancelled load returns ctx's error (exit 130) and prints nothing.
func load(ctx context.Context, g *globalFlags, dir string) (*spec.Config, error) {
	cfg, diags := spec.LoadContext(ctx, dir, spec.Options{Vars: g.vars, VarFiles: g.varFiles, Environ: os.Environ()})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := writeDiagnostics(cfg.Files, diags); err != nil {
		return nil, err
	}
	if diags.HasErrors() {
		return nil, reportedError{exitUsage}
	}
	return cfg, nil
}

// writeDiagnostics prints diags to stderr with source snippets, in color on
// a terminal.
func writeDiagnostics(files map[string]*hcl.File, diags hcl.Diagnostics) error {
	if len(diags) == 0 {
		return nil
	}
	color := term.IsTerminal(int(os.Stderr.Fd())) && os.Getenv("NO_COLOR") == ""
	return spec.WriteDiagnostics(os.Stderr, files, diags, color)
}

// openedCache is the local cache with its stat cache, and the remote
// caches over it when the build or the flags name any.
type openedCache struct {
	*local.Cache
	stat   *treehash.StatCache
	tiered *tiered.Cache // nil without remote caches
	to     tiered.Remote // the remote cache written through to; nil for none
	toURL  string        // its URL as given
}

// stores returns what the engine reads and writes through.
func (c *openedCache) stores() (cache.Store, cache.LockingActionCache) {
	if c.tiered != nil {
		return c.tiered, c.tiered.Actions()
	}
	return c.Cache, c.Actions()
}

func openCache(g *globalFlags, cfg *spec.Config) (*openedCache, error) {
	dir := cfg.Settings.Cache.Dir
	if g.cacheDir != "" {
		abs, err := filepath.Abs(g.cacheDir)
		if err != nil {
			return nil, usageError{err}
		}
		dir = abs
	}
	return openCacheDir(dir)
}

func openCacheDir(dir string) (*openedCache, error) {
	// A file where the cache should be is a configuration error (exit 2).
	if fi, err := os.Stat(dir); (err == nil && !fi.IsDir()) || errors.Is(err, syscall.ENOTDIR) {
		return nil, usageError{fmt.Errorf("cache directory %s: not a directory", dir)}
	}
	c, err := local.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open cache: %w", err)
	}
	sc, err := treehash.OpenStatCache(c.StatCachePath())
	if err != nil {
		return nil, fmt.Errorf("open stat cache: %w", err)
	}
	return &openedCache{Cache: c, stat: sc}, nil
}

// close saves the stat cache.
func (c *openedCache) close() {
	if err := c.stat.Save(); err != nil {
		fmt.Fprintln(os.Stderr, "imsbuild: save stat cache:", err)
	}
}
