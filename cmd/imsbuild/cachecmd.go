package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/imsbuild/imsbuild/cache/local"
	"github.com/imsbuild/imsbuild/cache/pkgproxy"
	"github.com/imsbuild/imsbuild/internal/bytesize"
	"github.com/imsbuild/imsbuild/spec"
)

// cacheFor opens the cache of the build in args[0] (default "."): --cache-dir,
// else the build's imsbuild.cache.dir, else ./.imsbuild/cache.
func cacheFor(ctx context.Context, g *globalFlags, args []string) (*openedCache, error) {
	if g.cacheDir != "" {
		abs, err := filepath.Abs(g.cacheDir)
		if err != nil {
			return nil, usageError{err}
		}
		return openCacheDir(abs)
	}
	dir, _ := splitDirArgs(args)
	if m, _ := filepath.Glob(filepath.Join(dir, "*.ims.hcl")); len(m) == 0 {
		abs, err := filepath.Abs(filepath.Join(dir, ".imsbuild", "cache"))
		if err != nil {
			return nil, usageError{err}
		}
		return openCacheDir(abs)
	}
	cfg, err := load(ctx, g, dir)
	if err != nil {
		return nil, err
	}
	return openCache(g, cfg)
}

func newCacheCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "Inspect, verify and prune the local cache",
		Long: `The cache holds blobs by sha256 (blobs/sha256/…) and action results by key (actions/<key>.json),
each result with the key preimage that explains it. DIR selects a build whose imsbuild.cache.dir
is used; --cache-dir names a cache directly.`,
	}
	cmd.AddCommand(newCacheLsCmd(g), newCacheVerifyCmd(g), newCachePruneCmd(g))
	return cmd
}

func newCacheLsCmd(g *globalFlags) *cobra.Command {
	var packages bool
	cmd := &cobra.Command{
		Use:   "ls [DIR]",
		Short: "List cached step results, oldest first",
		Long: `List cached step results, oldest first. Packages that kiwi builds downloaded through the
package cache are summed up in one line; --packages lists each (--json always does).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cacheFor(cmd.Context(), g, args)
			if err != nil {
				return err
			}
			entries, err := c.List(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.json {
				enc := json.NewEncoder(out)
				for _, e := range entries {
					if err := enc.Encode(map[string]any{"key": e.Key, "step": e.Result.Step, "created": e.Result.Created, "outputs": e.Result.Outputs}); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tSTEP\tCREATED\tSIZE")
			// Downloaded packages (hundreds) are one line unless --packages.
			var pkgs int
			var pkgSize int64
			var pkgNewest time.Time
			for _, e := range entries {
				var size int64
				for _, o := range e.Result.Outputs {
					size += o.Size
				}
				if e.Result.Step == pkgproxy.Step && !packages {
					pkgs++
					pkgSize += size
					if e.Result.Created.After(pkgNewest) {
						pkgNewest = e.Result.Created
					}
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", shortKey(e.Key), e.Result.Step, e.Result.Created.Local().Format(time.DateTime), bytesize.Format(size))
			}
			if pkgs > 0 {
				fmt.Fprintf(tw, "-\t%d packages (--packages lists them)\t%s\t%s\n", pkgs, pkgNewest.Local().Format(time.DateTime), bytesize.Format(pkgSize))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&packages, "packages", false, "list every cached package download")
	return cmd
}

func newCacheVerifyCmd(g *globalFlags) *cobra.Command {
	var repair bool
	cmd := &cobra.Command{
		Use:   "verify [DIR]",
		Short: "Re-hash every blob and check every result; exit 1 on corruption",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cacheFor(cmd.Context(), g, args)
			if err != nil {
				return err
			}
			rep, err := c.Verify(cmd.Context(), local.VerifyOptions{Repair: repair})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, b := range rep.CorruptBlobs {
				fmt.Fprintf(out, "corrupt blob %s\n", b)
			}
			for _, a := range rep.BrokenActions {
				fmt.Fprintf(out, "broken result %s\n", a)
			}
			fmt.Fprintf(out, "%d blobs, %d results checked; %d corrupt blobs, %d broken results%s\n",
				rep.Blobs, rep.Actions, len(rep.CorruptBlobs), len(rep.BrokenActions), map[bool]string{true: " (removed)"}[repair && !rep.OK()])
			if !rep.OK() && !repair {
				return reportedError{exitFailed}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&repair, "repair", false, "remove corrupt blobs and the results that refer to them, as outputs or as inputs (built from them)")
	return cmd
}

func newCachePruneCmd(g *globalFlags) *cobra.Command {
	var maxSize string
	var maxAge time.Duration
	cmd := &cobra.Command{
		Use:     "prune [DIR]",
		Short:   "Remove old or least recently used results and unreferenced blobs",
		Example: `  imsbuild cache prune --max-size 50G --max-age 168h`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := local.PruneOptions{MaxAge: maxAge, Now: time.Now()}
			if maxSize != "" {
				n, err := spec.ParseSize(maxSize)
				if err != nil {
					return usageError{fmt.Errorf("--max-size: %w", err)}
				}
				opts.MaxSize = n
			}
			c, err := cacheFor(cmd.Context(), g, args)
			if err != nil {
				return err
			}
			rep, err := c.Prune(cmd.Context(), opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %d results, %d blobs and %d unpacked trees (%s), %d stale locks and %d temp files; %s left\n",
				rep.RemovedActions, rep.RemovedBlobs, rep.RemovedTrees, bytesize.Format(rep.FreedBytes), rep.RemovedLocks, rep.RemovedTempFiles, bytesize.Format(rep.RemainingBytes))
			return nil
		},
	}
	cmd.Flags().StringVar(&maxSize, "max-size", "", "keep at most this many bytes of blobs (e.g. 50G, 512M)")
	cmd.Flags().DurationVar(&maxAge, "max-age", 0, "remove results older than this (e.g. 168h); 0 keeps all ages")
	return cmd
}
