package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/imsbuild/imsbuild/engine"
	"github.com/imsbuild/imsbuild/internal/atomicfile"
	"github.com/imsbuild/imsbuild/lockfile"
	"github.com/imsbuild/imsbuild/spec"
)

func newLockCmd(g *globalFlags) *cobra.Command {
	var update bool
	cmd := &cobra.Command{
		Use:   "lock [DIR] [RECIPE...]",
		Short: "Write the package lock, imsbuild.lock.json: the packages each recipe resolves",
		Long: `lock runs the kiwi prepare of each recipe (or takes it from the cache) and writes, beside
the build files, imsbuild.lock.json: per recipe every installed package (name, version,
arch, sha256 of the .deb/.rpm and the URL path it came from) and the digests of the
repositories' metadata. RECIPEs are recipe names (node or recipe.node); none means every
recipe an image is built from.

Without --update, lock only adds the recipes the lock lacks, as cargo generate-lockfile
does: an entry already there stays as it is, whatever the repositories publish meanwhile.
Entries of recipes the build no longer declares are removed. With --update, the named
recipes (all when none) are resolved again with every repository's metadata in the prepare
key, so a republished repository runs kiwi again while an unchanged one reuses the cached
prepare; lock prints what changed per package.

imsbuild build --locked then builds each recipe exactly as locked or fails naming every
package that differs; see imsbuild build --help.`,
		Example: `  imsbuild lock .                  # add the recipes the lock lacks
  imsbuild lock --update . node    # resolve recipe node again
  imsbuild build --locked .        # build only what the lock says`,
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, names := splitDirArgs(args)
			cfg, c, _, err := loadBuild(cmd.Context(), g, []string{dir})
			if err != nil {
				return err
			}
			defer c.close()
			old, err := readLock(dir)
			if err != nil {
				return usageError{err}
			}
			lf := &lockfile.File{Version: lockfile.Version, Recipes: map[string]*lockfile.Recipe{}}
			if old != nil {
				for name, r := range old.Recipes {
					lf.Recipes[name] = r
				}
			}
			for i, n := range names {
				names[i] = strings.TrimPrefix(n, "recipe.")
			}
			out := cmd.OutOrStdout()
			msg := out // what changed; --json prints only events
			if g.json {
				msg = io.Discard
			}
			for name := range lf.Recipes {
				if cfg.Recipes[name] == nil {
					delete(lf.Recipes, name)
					fmt.Fprintf(msg, "recipe %s: removed (no longer declared)\n", name)
				}
			}
			var todo []string
			if update {
				todo = names
				if len(todo) == 0 {
					todo = recipesWithImages(cfg.Images)
				}
				for _, n := range todo {
					if r := cfg.Recipes[n]; r != nil && len(r.Repositories) == 0 {
						// Nothing of the repositories is in its key: a
						// cached prepare is what it resolved last.
						fmt.Fprintf(msg, "warning: recipe %s declares no repositories; --update resolves it again only when its recipe changes\n", n)
					}
				}
			} else {
				want := names
				if len(want) == 0 {
					want = recipesWithImages(cfg.Images)
				}
				for _, n := range want {
					if lf.Recipes[n] == nil || cfg.Recipes[n] == nil {
						todo = append(todo, n) // an undeclared name fails in Resolve
					}
				}
			}
			if len(todo) > 0 {
				work, release, err := engine.AcquireWorkDir(filepath.Join(c.Dir(), "work"), slog.Default())
				if err != nil {
					return err
				}
				defer release()
				printer := newPrinter(out, os.Stderr, g.json)
				defer printer.Close()
				e, err := newEngine(cfg, c, engine.Options{
					TrackRepos:        update, // a republished repository resolves again
					Jobs:              g.jobs,
					BootstrapCacheDir: engine.DefaultBootstrapCacheDir,
					PackageStore:      c.Cache,
					PackageActions:    c.Actions(),
					WorkDir:           work,
					Events:            printer.Event,
				})
				if err != nil {
					return err
				}
				printer.SetRedact(e.Redact)
				got, err := e.Resolve(cmd.Context(), todo)
				printer.Summary(err)
				if err != nil {
					switch {
					case cmd.Context().Err() != nil:
						return reportedError{exitCancelled}
					case printer.Failed():
						return reportedError{exitFailed}
					}
					return targetError(err, e.Redact)
				}
				for _, name := range slices.Sorted(maps.Keys(got)) {
					reportLockChange(msg, name, lf.Recipes[name], got[name])
					lf.Recipes[name] = lockfile.Carry(lf.Recipes[name], got[name])
				}
			}
			data := lf.Encode()
			if old != nil && string(old.Encode()) == string(data) {
				fmt.Fprintf(msg, "%s is up to date\n", lockfile.Name)
				return nil
			}
			if err := atomicfile.WriteFile(filepath.Join(dir, lockfile.Name), data, 0o644); err != nil {
				return fmt.Errorf("write lock: %w", err)
			}
			fmt.Fprintf(msg, "wrote %s (%d recipes)\n", filepath.Join(dir, lockfile.Name), len(lf.Recipes))
			return nil
		},
	}
	cmd.Flags().BoolVar(&update, "update", false, "resolve the recipes again (all when none is named) and refresh their entries")
	return cmd
}

// reportLockChange prints what a recipe's new entry changes.
func reportLockChange(w io.Writer, name string, old, got *lockfile.Recipe) {
	if old == nil {
		fmt.Fprintf(w, "recipe %s: %d packages locked\n", name, len(got.Packages))
		return
	}
	diff := lockfile.Diff(old, got)
	if len(diff) == 0 {
		fmt.Fprintf(w, "recipe %s: unchanged (%d packages)\n", name, len(got.Packages))
		return
	}
	fmt.Fprintf(w, "recipe %s: %d packages changed\n", name, len(diff))
	for _, l := range diff {
		fmt.Fprintf(w, "  %s\n", l)
	}
}

// readLock reads DIR's lock file; nil, nil when there is none.
func readLock(dir string) (*lockfile.File, error) {
	path := filepath.Join(dir, lockfile.Name)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, lockfile.MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	lf, err := lockfile.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return lf, nil
}

// buildLock returns the lock a build or plan uses: required with locked,
// else the lock file when there is one (its differences are warnings).
func buildLock(dir string, locked bool) (*lockfile.File, error) {
	lf, err := readLock(dir)
	if err != nil {
		return nil, usageError{err}
	}
	if locked && lf == nil {
		return nil, usageError{fmt.Errorf("--locked: no %s in %s; imsbuild lock writes it", lockfile.Name, dir)}
	}
	return lf, nil
}

// recipesWithImages returns the recipes an image is built from, sorted.
func recipesWithImages(images map[string]*spec.Image) []string {
	var out []string
	for _, img := range images {
		if img.Recipe != "" && !slices.Contains(out, img.Recipe) {
			out = append(out, img.Recipe)
		}
	}
	slices.Sort(out)
	return out
}
