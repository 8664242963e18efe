package untar

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// resolveFlags keep every lookup beneath the root and refuse symlinks.
const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// openDir opens the directory dir (a clean relative path, "" for the root)
// beneath the root without following symlinks, creating missing components
// when create is set. The returned func closes the descriptor.
func (e *extractor) openDir(dir string, create bool) (int, func(), error) {
	if dir == "" {
		return e.rootfd, func() {}, nil
	}
	how := &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: resolveFlags}
	fd, err := unix.Openat2(e.rootfd, dir, how)
	if err == nil {
		return fd, func() { unix.Close(fd) }, nil
	}
	if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM) {
		return -1, nil, dirError(dir, err)
	}
	// Walk one component at a time: no "..", O_NOFOLLOW on each step is
	// the same guarantee as RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS.
	cur := e.rootfd
	closeCur := func() {
		if cur != e.rootfd {
			unix.Close(cur)
		}
	}
	for _, comp := range strings.Split(dir, "/") {
		if create {
			err := unix.Mkdirat(cur, comp, 0o755)
			if err == nil {
				// A directory the archive does not list gets 0755 whatever
				// imsbuild's umask is: images must not depend on it.
				err = unix.Fchmodat(cur, comp, 0o755, 0)
			}
			if err != nil && !errors.Is(err, unix.EEXIST) {
				closeCur()
				return -1, nil, dirError(dir, err)
			}
		}
		next, err := unix.Openat(cur, comp, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		closeCur()
		if err != nil {
			return -1, nil, dirError(dir, err)
		}
		cur = next
	}
	fd = cur
	return fd, func() { unix.Close(fd) }, nil
}

func dirError(dir string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("parent %q is or goes through a symlink: %w", dir, ErrUnsafe)
	case errors.Is(err, unix.EXDEV):
		return fmt.Errorf("parent %q escapes the destination: %w", dir, ErrUnsafe)
	case errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("parent %q is not a directory: %w", dir, ErrUnsafe)
	}
	return fmt.Errorf("open parent %q: %w", dir, err)
}

// mkdir creates the directory name (mode 0700 until finishDirs), replacing
// a non-directory in the way.
func (e *extractor) mkdir(name string) error {
	dir, base := split(name)
	pfd, closeDir, err := e.openDir(dir, true)
	if err != nil {
		return err
	}
	defer closeDir()
	err = unix.Mkdirat(pfd, base, 0o700)
	if errors.Is(err, unix.EEXIST) {
		var st unix.Stat_t
		if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return nil
		}
		if err := unix.Unlinkat(pfd, base, 0); err != nil {
			return fmt.Errorf("replace existing entry: %w", err)
		}
		err = unix.Mkdirat(pfd, base, 0o700)
	}
	return err
}

// removeEntry removes a non-directory or empty directory at pfd/base.
func removeEntry(pfd int, base string) error {
	err := unix.Unlinkat(pfd, base, 0)
	if errors.Is(err, unix.EISDIR) {
		err = unix.Unlinkat(pfd, base, unix.AT_REMOVEDIR)
	}
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("replace existing entry: %w", err)
}

func (e *extractor) file(pfd int, base string, hdr *tar.Header, r io.Reader) error {
	if err := removeEntry(pfd, base); err != nil {
		return err
	}
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), base)
	defer f.Close()
	// io.Copy uses tar.Reader.WriteTo, which seeks over sparse holes.
	if _, err := io.Copy(f, r); err != nil {
		return err
	}
	if err := e.fdAttrs(fd, hdr); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return e.times(pfd, base, hdr)
}

func (e *extractor) symlink(pfd int, base string, hdr *tar.Header) error {
	if hdr.Linkname == "" {
		return fmt.Errorf("symlink without target: %w", ErrUnsafe)
	}
	if err := removeEntry(pfd, base); err != nil {
		return err
	}
	if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
		return err
	}
	if e.owners {
		if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			e.notef("chown %s: %v", hdr.Name, err)
		}
	}
	return e.times(pfd, base, hdr)
}

func (e *extractor) hardlink(pfd int, base, name string, hdr *tar.Header) error {
	target, err := cleanName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("hardlink target %w", err)
	}
	if target == name {
		return nil
	}
	if !e.done[target] {
		return fmt.Errorf("hardlink target %q is not an earlier entry of the archive: %w", hdr.Linkname, ErrUnsafe)
	}
	tdir, tbase := split(target)
	tfd, closeT, err := e.openDir(tdir, false)
	if err != nil {
		return fmt.Errorf("hardlink target: %w", err)
	}
	defer closeT()
	if err := removeEntry(pfd, base); err != nil {
		return err
	}
	return unix.Linkat(tfd, tbase, pfd, base, 0)
}

func (e *extractor) node(pfd int, base string, hdr *tar.Header) error {
	mode := uint32(hdr.Mode) & 0o7777
	switch hdr.Typeflag {
	case tar.TypeChar:
		mode |= unix.S_IFCHR
	case tar.TypeBlock:
		mode |= unix.S_IFBLK
	default:
		mode |= unix.S_IFIFO
	}
	if err := removeEntry(pfd, base); err != nil {
		return err
	}
	dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	if err := unix.Mknodat(pfd, base, mode, int(dev)); err != nil {
		return err
	}
	// Open the node itself (O_PATH: no device open, no fifo block) to set
	// its attributes without following anything.
	fd, err := unix.Openat(pfd, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if e.owners {
		if err := unix.Fchownat(fd, "", hdr.Uid, hdr.Gid, unix.AT_EMPTY_PATH); err != nil {
			e.notef("chown %s: %v", hdr.Name, err)
		}
	}
	if err := unix.Fchmodat(pfd, base, uint32(hdr.Mode)&0o7777, 0); err != nil {
		return err
	}
	return e.times(pfd, base, hdr)
}

// finishDirs applies the metadata of directory entries once their content
// is in place, deepest first.
func (e *extractor) finishDirs() error {
	for i := len(e.dirs) - 1; i >= 0; i-- {
		hdr := e.dirs[i]
		name, _ := cleanName(hdr.Name)
		dir, base := split(name)
		fd, closeDir, err := e.openDir(name, false)
		if err != nil {
			// Replaced by a later entry; that one's metadata stands.
			continue
		}
		err = e.fdAttrs(fd, hdr)
		closeDir()
		if err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
		if name == "" {
			ts := timespecs(hdr)
			if err := unix.UtimesNanoAt(e.rootfd, ".", ts[:], 0); err != nil && !ignorableTime(err) {
				return fmt.Errorf("%s: %w", hdr.Name, err)
			}
			continue
		}
		pfd, closeP, err := e.openDir(dir, false)
		if err != nil {
			continue
		}
		err = e.times(pfd, base, hdr)
		closeP()
		if err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
	}
	return nil
}

// fdAttrs sets owner, mode and xattrs of an open file or directory, in
// that order (chown clears setuid bits and capabilities).
func (e *extractor) fdAttrs(fd int, hdr *tar.Header) error {
	if e.owners {
		if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
			e.notef("chown %s: %v", hdr.Name, err)
		}
	}
	if err := unix.Fchmod(fd, uint32(hdr.Mode)&0o7777); err != nil {
		return err
	}
	for k, v := range hdr.PAXRecords {
		attr, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok {
			continue
		}
		err := unix.Fsetxattr(fd, attr, []byte(v), 0)
		switch {
		case err == nil:
		case errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES), errors.Is(err, unix.EINVAL):
			e.notef("xattr %s on %s: %v", attr, hdr.Name, err)
		default:
			return fmt.Errorf("xattr %s: %w", attr, err)
		}
	}
	return nil
}

func (e *extractor) times(pfd int, base string, hdr *tar.Header) error {
	ts := timespecs(hdr)
	err := unix.UtimesNanoAt(pfd, base, ts[:], unix.AT_SYMLINK_NOFOLLOW)
	if err != nil && !ignorableTime(err) {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

func timespecs(hdr *tar.Header) [2]unix.Timespec {
	at := hdr.AccessTime
	if at.IsZero() {
		at = hdr.ModTime
	}
	return [2]unix.Timespec{spec(at), spec(hdr.ModTime)}
}

func spec(t time.Time) unix.Timespec {
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

func ignorableTime(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOVERFLOW) || errors.Is(err, unix.ERANGE)
}
