package recipe

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/imsbuild/imsbuild/internal/ctxio"
)

// Option configures Archive.
type Option func(*options) error

type options struct {
	mtime time.Time
}

// WithModTime sets the mtime of every entry (default the Unix epoch); pass
// time.Unix(SOURCE_DATE_EPOCH, 0) to follow reproducible-builds.org.
// Sub-second parts are dropped.
func WithModTime(t time.Time) Option {
	return func(o *options) error {
		if t.Unix() < 0 {
			return fmt.Errorf("mod time %v is before the Unix epoch", t)
		}
		o.mtime = time.Unix(t.Unix(), 0)
		return nil
	}
}

// Archive writes srcDir as a gzip'd tar to w, reproducibly: entries in
// lexical path order with names relative to srcDir (directories end in "/";
// srcDir itself has no entry), owner root:root (uid/gid 0), every mtime the
// same (the Unix epoch unless WithModTime), permission bits kept
// (setuid/setgid/sticky too), symlinks kept as symlinks with their target
// as is, hard links stored as separate files, no xattrs, and a gzip header
// without name or time. Devices, fifos and sockets are errors. srcDir may be
// a symlink to the directory. Files are streamed, never held in memory.
func Archive(ctx context.Context, srcDir string, w io.Writer, opts ...Option) error {
	o := options{mtime: time.Unix(0, 0)}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return fmt.Errorf("archive %s: %w", srcDir, err)
		}
	}
	root, err := filepath.EvalSymlinks(srcDir)
	if err != nil {
		return fmt.Errorf("archive %s: %w", srcDir, err)
	}
	if fi, err := os.Stat(root); err != nil {
		return fmt.Errorf("archive %s: %w", srcDir, err)
	} else if !fi.IsDir() {
		return fmt.Errorf("archive %s: not a directory", srcDir)
	}
	zw := gzip.NewWriter(w) // header: no name, mtime 0, OS unknown
	tw := tar.NewWriter(zw)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if err := writeEntry(ctx, tw, p, filepath.ToSlash(rel), o.mtime); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		return fmt.Errorf("archive %s: %w", srcDir, err)
	}
	return nil
}

// writeEntry writes the header, and the content of a regular file.
func writeEntry(ctx context.Context, tw *tar.Writer, p, name string, mtime time.Time) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	hdr := &tar.Header{
		Name:    name,
		Mode:    tarMode(fi.Mode()),
		Uid:     0,
		Gid:     0,
		Uname:   "root",
		Gname:   "root",
		ModTime: mtime,
	}
	switch m := fi.Mode(); {
	case m.IsDir():
		hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
		return tw.WriteHeader(hdr)
	case m&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
		return tw.WriteHeader(hdr)
	case m.IsRegular():
		return writeFile(ctx, tw, p, hdr)
	default:
		return fmt.Errorf("%s is not a file, directory or symlink: recipes hold no device nodes, fifos or sockets", m.Type())
	}
}

func writeFile(ctx context.Context, tw *tar.Writer, p string, hdr *tar.Header) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("replaced while archiving")
	}
	hdr.Typeflag, hdr.Size = tar.TypeReg, fi.Size()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.Copy(tw, io.LimitReader(ctxio.Reader(ctx, f), hdr.Size))
	if err != nil {
		return err
	}
	if n != hdr.Size {
		return fmt.Errorf("shrank from %d to %d bytes while archiving", hdr.Size, n)
	}
	return nil
}

// tarMode returns the permission and setuid/setgid/sticky bits of m as tar
// mode bits.
func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}
