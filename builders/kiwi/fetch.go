package kiwi

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/imsbuild/imsbuild/internal/ctxio"
	"github.com/imsbuild/imsbuild/internal/untar"
)

// ErrUnsupportedSource reports a recipe source scheme imsbuild cannot fetch
// yet (s3://, ims://, http://).
var ErrUnsupportedSource = errors.New("recipe source not supported yet")

// ErrUnsafeEntry reports a recipe entry that could escape the recipe
// directory or is not a plain file, directory or contained symlink: device
// nodes, fifos, sockets, absolute symlinks and symlinks leaving the tree.
var ErrUnsafeEntry = errors.New("unsafe recipe entry")

// FetchRecipe puts the recipe source into dst, which must be missing or an
// empty directory. source is a directory (copied: files, directories and
// symlinks, with their permission bits) or a tar archive, plain or gzip or
// zstd compressed (the IMS recipe.tgz format), extracted so that no entry
// escapes dst. Device nodes, fifos, absolute symlinks and symlinks whose
// target leaves the recipe are refused with an error wrapping
// ErrUnsafeEntry. s3:// and ims:// sources give an error wrapping
// ErrUnsupportedSource.
func FetchRecipe(ctx context.Context, source, dst string) error {
	if i := strings.Index(source, "://"); i > 0 {
		return fmt.Errorf("fetch recipe %s: %s: %w", source, source[:i], ErrUnsupportedSource)
	}
	if err := emptyDir(dst); err != nil {
		return fmt.Errorf("fetch recipe %s: %w", source, err)
	}
	fi, err := os.Stat(source)
	if err != nil {
		return fmt.Errorf("fetch recipe: %w", err)
	}
	if fi.IsDir() {
		err = copyTree(ctx, source, dst)
	} else {
		err = extractRecipe(ctx, source, dst)
	}
	if err != nil {
		return fmt.Errorf("fetch recipe %s: %w", source, err)
	}
	return nil
}

// emptyDir creates dst or checks that it is an empty directory.
func emptyDir(dst string) error {
	entries, err := os.ReadDir(dst)
	if errors.Is(err, fs.ErrNotExist) {
		return os.MkdirAll(dst, 0o755)
	}
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return fmt.Errorf("destination %s is not empty", dst)
	}
	return nil
}

// checkLink refuses a symlink at rel (slash separated, relative to the
// recipe root) whose target is absolute or resolves outside the root.
func checkLink(rel, target string) error {
	if path.IsAbs(target) || filepath.IsAbs(target) {
		return fmt.Errorf("%s: absolute symlink to %s: %w", rel, target, ErrUnsafeEntry)
	}
	joined := path.Join(path.Dir(rel), target)
	if joined == ".." || strings.HasPrefix(joined, "../") {
		return fmt.Errorf("%s: symlink to %s leaves the recipe: %w", rel, target, ErrUnsafeEntry)
	}
	return nil
}

// extractRecipe streams the archive through a filter that refuses unsafe
// entry types and symlinks into untar.Extract, which refuses paths escaping
// dst and writes through no symlink.
func extractRecipe(ctx context.Context, archive, dst string) error {
	rc, err := untar.Open(archive)
	if err != nil {
		return err
	}
	defer rc.Close()
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(filterTar(rc, pw)) }()
	err = untar.Extract(ctx, pr, dst, untar.Options{})
	pr.CloseWithError(errors.New("extraction stopped"))
	return err
}

// filterTar copies the tar stream r to w, failing on the first unsafe entry.
func filterTar(r io.Reader, w io.Writer) error {
	tr := tar.NewReader(r)
	tw := tar.NewWriter(w)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return tw.Close()
		}
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeDir, tar.TypeLink:
		case tar.TypeSymlink:
			if err := checkLink(name, hdr.Linkname); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: %s entry: %w", hdr.Name, typeName(hdr.Typeflag), ErrUnsafeEntry)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
	}
}

func typeName(t byte) string {
	switch t {
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "fifo"
	}
	return fmt.Sprintf("type %q", t)
}

// copyTree copies the directory src into the existing directory dst.
func copyTree(ctx context.Context, src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch mode := fi.Mode(); {
		case mode.IsDir():
			if rel != "." {
				if err := os.Mkdir(target, 0o700); err != nil {
					return err
				}
			}
			// Directories get their mode after their contents, so a
			// read-only directory can still be filled.
			defer os.Chmod(target, mode.Perm()|mode&(fs.ModeSetgid|fs.ModeSticky))
			return nil
		case mode.IsRegular():
			return copyFile(ctx, p, target, mode)
		case mode&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := checkLink(filepath.ToSlash(rel), link); err != nil {
				return err
			}
			return os.Symlink(link, target)
		default:
			return fmt.Errorf("%s: %s: %w", rel, mode.Type(), ErrUnsafeEntry)
		}
	})
}

func copyFile(ctx context.Context, src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, ctxio.Reader(ctx, in)); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Chmod(mode.Perm() | mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
