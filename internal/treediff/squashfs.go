package treediff

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"golang.org/x/sync/errgroup"

	"github.com/imsbuild/imsbuild/internal/tail"
)

// Squashfs compares the trees of two squashfs files: both are unpacked
// with unsquashfs under scratch (which must exist; the trees are removed
// after) and compared with Dirs.
func Squashfs(ctx context.Context, oldFile, newFile, scratch string, max int) (*Report, error) {
	dir, err := os.MkdirTemp(scratch, "treediff-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	oldDir, newDir := filepath.Join(dir, "old"), filepath.Join(dir, "new")
	// Both at once: each unsquashfs waits on its reads and writes as much
	// as on its decompression.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return unsquash(gctx, oldFile, oldDir) })
	g.Go(func() error { return unsquash(gctx, newFile, newDir) })
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return Dirs(ctx, oldDir, newDir, max)
}

func unsquash(ctx context.Context, src, dst string) error {
	out := tail.New(10)
	cmd := exec.CommandContext(ctx, "unsquashfs", "-no-progress", "-quiet", "-d", dst, src)
	cmd.Stdout, cmd.Stderr = out, out
	err := cmd.Run()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok && ee.ExitCode() == 2 && os.Geteuid() != 0 {
		// Non-fatal: not root, so no owners or device nodes; both trees
		// lack the same ones.
		return nil
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("unsquashfs %s: %w", src, ctx.Err())
		}
		return fmt.Errorf("unsquashfs %s: %w: %s", src, err, out.Summary(3))
	}
	return nil
}
