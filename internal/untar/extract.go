package untar

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/imsbuild/imsbuild/internal/ctxio"
)

// ErrUnsafe reports a tar entry that would escape the destination, write
// through a symlink or link to a file outside the archive.
var ErrUnsafe = errors.New("unsafe tar entry")

// Options configure Extract.
type Options struct {
	// AllowDevices creates character and block devices and fifos (devices
	// need root). Without it they are skipped with a note in Log.
	AllowDevices bool
	// Log receives notes about skipped entries and attributes that the
	// filesystem refused; nil discards them.
	Log io.Writer
}

// maxNotes bounds the notes written to Options.Log for one archive.
const maxNotes = 20

// Extract reads the tar stream r and writes its entries under dst, which is
// created when missing. Entries with absolute paths or ".." components,
// entries whose parent is a symlink, and hardlinks to anything the archive
// did not extract before are refused with an error wrapping ErrUnsafe.
// Symlinks are created as they are (their targets are data), but nothing is
// ever written through one: every parent is resolved beneath dst without
// following symlinks (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS).
//
// Owners are kept (numerically) when running as root; modes, setuid bits,
// mtimes and SCHILY.xattr.* records are kept where the filesystem allows.
func Extract(ctx context.Context, r io.Reader, dst string, opts Options) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("extract: %w", err)
	}
	rootfd, err := unix.Open(dst, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("extract: open %s: %w", dst, err)
	}
	defer unix.Close(rootfd)
	e := &extractor{
		ctx:    ctx,
		rootfd: rootfd,
		opts:   opts,
		owners: os.Geteuid() == 0,
		done:   make(map[string]bool),
		dirIdx: make(map[string]int),
	}
	tr := tar.NewReader(ctxio.Reader(ctx, r))
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("extract %s: %w", dst, err)
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("extract %s: read tar: %w", dst, err)
		}
		if err := e.entry(hdr, tr); err != nil {
			return fmt.Errorf("extract %s: %w", dst, err)
		}
	}
	if err := e.finishDirs(); err != nil {
		return fmt.Errorf("extract %s: %w", dst, err)
	}
	if e.notes > maxNotes {
		fmt.Fprintf(e.log(), "untar: %d more notes suppressed\n", e.notes-maxNotes)
	}
	return nil
}

type extractor struct {
	ctx    context.Context
	rootfd int
	opts   Options
	owners bool
	done   map[string]bool // non-directory entries extracted so far (hardlink targets)
	dirs   []*tar.Header   // directory entries, metadata applied at the end
	dirIdx map[string]int  // clean name → index in dirs
	notes  int
}

func (e *extractor) log() io.Writer {
	if e.opts.Log == nil {
		return io.Discard
	}
	return e.opts.Log
}

func (e *extractor) notef(format string, args ...any) {
	e.notes++
	if e.notes <= maxNotes {
		fmt.Fprintf(e.log(), "untar: "+format+"\n", args...)
	}
}

// cleanName returns the slash-separated relative path of an entry name, ""
// for the root itself, or an ErrUnsafe error.
func cleanName(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("empty name: %w", ErrUnsafe)
	}
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("%q: absolute path: %w", name, ErrUnsafe)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%q: NUL in name: %w", name, ErrUnsafe)
	}
	var parts []string
	for _, p := range strings.Split(name, "/") {
		switch p {
		case "", ".":
		case "..":
			return "", fmt.Errorf("%q: \"..\" in path: %w", name, ErrUnsafe)
		default:
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "/"), nil
}

func split(name string) (dir, base string) {
	dir, base = path.Split(name)
	return strings.TrimSuffix(dir, "/"), base
}

func (e *extractor) entry(hdr *tar.Header, tr io.Reader) error {
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	case tar.TypeDir:
		if name != "" {
			if err := e.mkdir(name); err != nil {
				return fmt.Errorf("%s: %w", hdr.Name, err)
			}
		}
		if i, ok := e.dirIdx[name]; ok {
			e.dirs[i] = hdr
		} else {
			e.dirIdx[name] = len(e.dirs)
			e.dirs = append(e.dirs, hdr)
		}
		return nil
	}
	if name == "" {
		return fmt.Errorf("%q: a %s entry cannot be the root: %w", hdr.Name, typeName(hdr.Typeflag), ErrUnsafe)
	}
	dir, base := split(name)
	pfd, closeDir, err := e.openDir(dir, true)
	if err != nil {
		return fmt.Errorf("%s: %w", hdr.Name, err)
	}
	defer closeDir()
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeCont:
		err = e.file(pfd, base, hdr, tr)
	case tar.TypeSymlink:
		err = e.symlink(pfd, base, hdr)
	case tar.TypeLink:
		err = e.hardlink(pfd, base, name, hdr)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		if !e.opts.AllowDevices {
			e.notef("skip %s %s (devices not allowed)", typeName(hdr.Typeflag), hdr.Name)
			return nil
		}
		err = e.node(pfd, base, hdr)
	default:
		e.notef("skip %s: unsupported tar type %q", hdr.Name, hdr.Typeflag)
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", hdr.Name, err)
	}
	e.done[name] = true
	return nil
}

func typeName(t byte) string {
	switch t {
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "fifo"
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeLink:
		return "hardlink"
	case tar.TypeDir:
		return "directory"
	}
	return "file"
}
