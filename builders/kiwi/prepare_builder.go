package kiwi

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/imsbuild/imsbuild/builders/sandbox"
)

// Where the inputs of a builder-root prepare appear in its container.
const (
	builderDescDir = "/mnt/desc"     // the description, read-only
	builderTmpDir  = "/mnt/imsbuild" // Prepare's private dir: GNUPGHOME, kiwi's log
	// defaultSharedCacheDir is kiwi's default shared cache, bound from the
	// host's when PrepareOptions.SharedCacheDir is empty, as a host prepare
	// would use it.
	defaultSharedCacheDir = "/var/cache/kiwi"
)

// checkBuilderRoot checks the paths a builder-root prepare binds into its
// container.
func checkBuilderRoot(opts PrepareOptions) error {
	if opts.BuilderRoot == "" {
		return nil
	}
	for _, p := range []struct{ what, dir string }{
		{"builder root", opts.BuilderRoot}, {"description", opts.Description}, {"image root", opts.Root},
	} {
		if !filepath.IsAbs(p.dir) {
			return fmt.Errorf("%s %s: not an absolute path", p.what, p.dir)
		}
	}
	fi, err := os.Stat(opts.BuilderRoot)
	if err != nil {
		return fmt.Errorf("builder root: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("builder root %s: not a directory", opts.BuilderRoot)
	}
	if filepath.Dir(filepath.Clean(opts.Root)) == "/" {
		return fmt.Errorf("image root %s: its parent, bound into the builder, must not be /", opts.Root)
	}
	return nil
}

// runBuilder runs kiwi-ng of opts.BuilderRoot in a privileged runc
// container. runc kills the container when ctx is done; its mounts live in
// the container's mount namespace, whose root is a slave of the host's, so
// none reaches the host.
func (r *prepareRun) runBuilder(ctx context.Context) error {
	sb, err := sandbox.Open(sandbox.BackendRunc)
	if err != nil {
		return err
	}
	work := filepath.Dir(filepath.Clean(r.opts.Root))
	cache := r.opts.SharedCacheDir
	if cache == "" {
		cache = defaultSharedCacheDir
	}
	cache = filepath.Clean(cache)
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return fmt.Errorf("shared cache dir: %w", err)
	}
	// kiwi's temporary files (apt configuration, bootstrap staging) go to
	// /var/tmp, read-only in the builder root.
	varTmp := filepath.Join(r.tmp, "var-tmp")
	if err := os.Mkdir(varTmp, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(varTmp, 0o1777); err != nil {
		return err
	}
	binds := []sandbox.Bind{
		{Source: r.opts.Description, Dest: builderDescDir, ReadOnly: true},
		{Source: r.tmp, Dest: builderTmpDir},
		{Source: varTmp, Dest: "/var/tmp"},
		{Source: cache, Dest: cache},
	}
	logFile := path.Join(builderTmpDir, "kiwi.log")
	if rel, err := filepath.Rel(r.tmp, r.logFile); err != nil || strings.HasPrefix(rel, "..") {
		// The caller's log file, made here and bound over the private one.
		if err := os.MkdirAll(filepath.Dir(r.logFile), 0o755); err != nil {
			return fmt.Errorf("kiwi log: %w", err)
		}
		if err := os.WriteFile(r.logFile, nil, 0o644); err != nil {
			return fmt.Errorf("kiwi log: %w", err)
		}
		binds = append(binds, sandbox.Bind{Source: r.logFile, Dest: logFile})
	}

	opts := r.opts
	opts.Description = builderDescDir
	opts.Root = path.Join(sandbox.ImageDir, filepath.Base(filepath.Clean(r.opts.Root)))
	opts.SharedCacheDir = cache
	return sb.Run(ctx, sandbox.Spec{
		Root:        work,
		BuilderRoot: r.opts.BuilderRoot,
		Network:     true,
		Privileged:  true,
		Args:        append([]string{"kiwi-ng"}, kiwiArgs(opts, logFile)...),
		Env:         prepareEnv(path.Join(builderTmpDir, "gnupg"), r.opts.Env),
		Binds:       binds,
		Stdout:      r.out,
		Stderr:      r.out,
	})
}
