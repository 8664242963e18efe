package normalize

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Options configure Root.
type Options struct {
	// Epoch is the build's SOURCE_DATE_EPOCH, the time pack gives every
	// file: shadow's last-change days are clamped to it and bytecode that
	// records another source mtime is stale.
	Epoch int64
	// Log gets one line per change; nil discards them.
	Log io.Writer
}

// Rule file lists, relative to the image root.
var (
	// truncated: files whose content is the build's own history.
	truncatedGlobs = []string{"var/log/*.log", "var/log/apt/*.log", "var/log/zypp/history"}
	// removed: regular files that a later run recreates, or that no node
	// needs.
	removedGlobs = []string{
		"var/log/apt/eipp.log.xz",
		"var/cache/apt/*.bin",
		"var/cache/apt/archives/*.deb",
		"var/cache/apt/archives/partial/*",
		"var/lib/dpkg/*-old",
		"var/cache/ldconfig/aux-cache",
		"var/lib/dbus/machine-id",
		"var/lib/systemd/random-seed",
		"var/lib/urandom/random-seed",
	}
	// emptied: directories whose whole content is a package cache.
	emptiedDirs = []string{"var/cache/zypp/packages", "var/cache/dnf", "var/cache/yum"}
	// modes of directories that tools create with the builder's umask.
	dirModes = []struct {
		name string
		mode fs.FileMode
	}{{".", 0o755}, {"dev", 0o755}}
)

// Root normalizes the image root dir as the package doc says.
func Root(ctx context.Context, dir string, opts Options) error {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("normalize: %w", err)
	}
	defer r.Close()
	n := &normalizer{r: r, opts: opts, log: opts.Log}
	if n.log == nil {
		n.log = io.Discard
	}
	for _, step := range []func(context.Context) error{
		n.truncateLogs, n.removeFiles, n.emptyDirs, n.machineID,
		n.shadow, n.bytecode, n.modes,
	} {
		if err := step(ctx); err != nil {
			return fmt.Errorf("normalize %s: %w", dir, err)
		}
	}
	return nil
}

type normalizer struct {
	r    *os.Root
	opts Options
	log  io.Writer
}

// glob returns the regular files that pattern (a path.Match pattern whose
// directory part has no metacharacters) matches, sorted.
func (n *normalizer) glob(pattern string) ([]string, error) {
	dir, base := path.Split(pattern)
	dir = strings.TrimSuffix(dir, "/")
	if !n.isDir(dir) {
		return nil, nil
	}
	f, err := n.r.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	entries, err := f.ReadDir(-1)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	var out []string
	for _, e := range entries {
		if ok, _ := path.Match(base, e.Name()); ok && e.Type().IsRegular() {
			out = append(out, path.Join(dir, e.Name()))
		}
	}
	return out, nil
}

// isDir reports a directory at name, reached without leaving the root.
// Lstat of the last element: a symlink to a directory is not followed.
func (n *normalizer) isDir(name string) bool {
	fi, err := n.r.Lstat(name)
	return err == nil && fi.IsDir()
}

// regular reports a regular file at name (not a symlink to one).
func (n *normalizer) regular(name string) (fs.FileInfo, bool) {
	fi, err := n.r.Lstat(name)
	if err != nil || !fi.Mode().IsRegular() {
		return nil, false
	}
	return fi, true
}

func (n *normalizer) truncateLogs(ctx context.Context) error {
	for _, g := range truncatedGlobs {
		names, err := n.glob(g)
		if err != nil {
			return err
		}
		for _, name := range names {
			if fi, ok := n.regular(name); !ok || fi.Size() == 0 {
				continue
			}
			// Truncating in place keeps the file's mode and owner.
			f, err := n.r.OpenFile(name, os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			fmt.Fprintf(n.log, "normalize: truncated /%s\n", name)
		}
	}
	return ctx.Err()
}

func (n *normalizer) removeFiles(ctx context.Context) error {
	for _, g := range removedGlobs {
		names, err := n.glob(g)
		if err != nil {
			return err
		}
		for _, name := range names {
			if err := n.r.Remove(name); err != nil {
				return err
			}
		}
		switch len(names) {
		case 0:
		case 1:
			fmt.Fprintf(n.log, "normalize: removed /%s\n", names[0])
		default:
			fmt.Fprintf(n.log, "normalize: removed %d files /%s\n", len(names), g)
		}
	}
	return ctx.Err()
}

func (n *normalizer) emptyDirs(ctx context.Context) error {
	for _, dir := range emptiedDirs {
		if !n.isDir(dir) {
			continue
		}
		f, err := n.r.Open(dir)
		if err != nil {
			return err
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
		for _, name := range names {
			// RemoveAll of an os.Root does not follow symlinks.
			if err := n.r.RemoveAll(path.Join(dir, name)); err != nil {
				return err
			}
		}
		if len(names) > 0 {
			fmt.Fprintf(n.log, "normalize: emptied /%s\n", dir)
		}
	}
	return ctx.Err()
}

func (n *normalizer) machineID(ctx context.Context) error {
	const name = "etc/machine-id"
	if fi, ok := n.regular(name); !ok || fi.Size() == 0 {
		return nil
	}
	f, err := n.r.OpenFile(name, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(n.log, "normalize: emptied /%s\n", name)
	return ctx.Err()
}

// shadow clamps the last-change field (the third) of each entry of
// /etc/shadow and its backup.
func (n *normalizer) shadow(ctx context.Context) error {
	days := n.opts.Epoch / 86400
	for _, name := range []string{"etc/shadow", "etc/shadow-"} {
		if _, ok := n.regular(name); !ok {
			continue
		}
		b, err := n.r.ReadFile(name)
		if err != nil {
			return err
		}
		out, changed := clampShadow(b, days)
		if !changed {
			continue
		}
		f, err := n.r.OpenFile(name, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			return err
		}
		_, err = f.Write(out)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(n.log, "normalize: clamped the last-change days of /%s\n", name)
	}
	return ctx.Err()
}

// clampShadow returns shadow file b with every last-change day after days
// set to days (emptied when days is 0), and whether anything changed.
// Lines that are not shadow entries stay as they are.
func clampShadow(b []byte, days int64) ([]byte, bool) {
	lines := bytes.SplitAfter(b, []byte("\n"))
	changed := false
	for i, line := range lines {
		body := bytes.TrimSuffix(line, []byte("\n"))
		fields := bytes.Split(body, []byte(":"))
		if len(fields) < 3 || len(fields[2]) == 0 {
			continue
		}
		d, err := strconv.ParseInt(string(fields[2]), 10, 64)
		if err != nil || d <= days {
			continue // a 0 (change at next login) set on purpose stays
		}
		if days == 0 {
			fields[2] = nil
		} else {
			fields[2] = []byte(strconv.FormatInt(days, 10))
		}
		nl := line[len(body):]
		lines[i] = append(bytes.Join(fields, []byte(":")), nl...)
		changed = true
	}
	return bytes.Join(lines, nil), changed
}

// bytecode removes stale timestamp-based .pyc files in __pycache__
// directories (see the package doc).
func (n *normalizer) bytecode(ctx context.Context) error {
	epoch := uint32(n.opts.Epoch)
	root, err := n.r.Open(".")
	if err != nil {
		return err
	}
	defer root.Close()
	return walkRegular(ctx, root, ".", func(p string) error {
		if !strings.HasSuffix(p, ".pyc") || path.Base(path.Dir(p)) != "__pycache__" {
			return nil
		}
		stale, err := n.stalePyc(p, epoch)
		if err != nil || !stale {
			return err
		}
		if err := n.r.Remove(p); err != nil {
			return err
		}
		fmt.Fprintf(n.log, "normalize: removed stale bytecode /%s\n", p)
		return nil
	})
}

// walkRegular calls fn with the path (relative to the root, as
// fs.WalkDir gives it) of every regular file below the directory dir, at
// rel, in fs.WalkDir's order, following no symlink. Each directory is
// opened relative to its parent's descriptor by a single name with
// O_NOFOLLOW, so the walk cannot leave the root: a customize leaves a
// root of tens of thousands of entries, which fs.WalkDir on an os.Root
// reopens directory by directory from the top (twice the time).
func walkRegular(ctx context.Context, dir *os.File, rel string, fn func(p string) error) error {
	entries, err := dir.ReadDir(-1)
	if err != nil {
		return err
	}
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	for _, e := range entries {
		p := path.Join(rel, e.Name())
		if e.Type().IsRegular() {
			if err := fn(p); err != nil {
				return err
			}
			continue
		}
		if !e.IsDir() {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		fd, err := unix.Openat(int(dir.Fd()), e.Name(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return &fs.PathError{Op: "open", Path: p, Err: err}
		}
		sub := os.NewFile(uintptr(fd), p)
		err = walkRegular(ctx, sub, p, fn)
		sub.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// stalePyc reports a .pyc whose header records a source mtime other than
// epoch. Python 3.7+ headers are magic, flags, then (flags bit 0 clear:
// timestamp-based) mtime and size; 3.3–3.6 headers have no flags. A file
// too short for a header is left alone.
func (n *normalizer) stalePyc(name string, epoch uint32) (bool, error) {
	f, err := n.r.Open(name)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var h [12]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return false, nil
	}
	if h[2] != '\r' || h[3] != '\n' {
		return false, nil // not a Python 3 magic number
	}
	const py37 = 3390 // the first magic number with the flags word
	if binary.LittleEndian.Uint16(h[:2]) < py37 {
		return binary.LittleEndian.Uint32(h[4:8]) != epoch, nil
	}
	if binary.LittleEndian.Uint32(h[4:8])&1 != 0 {
		return false, nil // hash-based: valid whatever the mtimes
	}
	return binary.LittleEndian.Uint32(h[8:12]) != epoch, nil
}

func (n *normalizer) modes(ctx context.Context) error {
	for _, d := range dirModes {
		fi, err := n.r.Lstat(d.name)
		if errors.Is(err, fs.ErrNotExist) || err == nil && !fi.IsDir() {
			continue
		}
		if err != nil {
			return err
		}
		if fi.Mode().Perm() == d.mode {
			continue
		}
		if err := n.r.Chmod(d.name, d.mode); err != nil {
			return err
		}
		fmt.Fprintf(n.log, "normalize: mode of /%s %v → %v\n", strings.TrimPrefix(d.name, "."), fi.Mode().Perm(), d.mode)
	}
	return ctx.Err()
}
