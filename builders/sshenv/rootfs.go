package sshenv

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// rootFS gives access to the files of an image root as a chroot would:
// every path is resolved by the kernel (openat2 RESOLVE_IN_ROOT), so ".."
// stops at the root and absolute symlinks are taken relative to it. That
// is race-free even while a session renames or replaces files.
type rootFS struct {
	dir   *os.File // the root, opened O_PATH
	mount string   // where the root appears in client paths: "/" or /mnt/image
}

// openRootFS opens root, shown to clients at mount.
func openRootFS(root, mount string) (*rootFS, error) {
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: root, Err: err}
	}
	return &rootFS{dir: os.NewFile(uintptr(fd), root), mount: mount}, nil
}

func (r *rootFS) Close() error { return r.dir.Close() }

// rel turns a client path into one relative to the root, refusing paths
// outside the mount point.
func (r *rootFS) rel(op, p string) (string, error) {
	p = path.Clean("/" + p)
	switch {
	case r.mount == "/":
		p = strings.TrimPrefix(p, "/")
	case p == r.mount:
		p = ""
	case strings.HasPrefix(p, r.mount+"/"):
		p = p[len(r.mount)+1:]
	default:
		return "", &fs.PathError{Op: op, Path: p, Err: unix.EACCES}
	}
	if p == "" {
		return ".", nil
	}
	return p, nil
}

// openat opens rel (relative to the root) with openat2; a symlink as the last
// component is followed unless flags has O_NOFOLLOW.
func (r *rootFS) openat(op, p, rel string, flags int, mode uint32) (*os.File, error) {
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	if flags&(unix.O_CREAT|unix.O_TMPFILE) != 0 {
		how.Mode = uint64(mode)
	}
	for range 16 {
		fd, err := unix.Openat2(int(r.dir.Fd()), rel, &how)
		switch {
		case err == nil:
			return os.NewFile(uintptr(fd), p), nil
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.EAGAIN):
			continue // EAGAIN: a concurrent rename, the kernel asks to retry
		default:
			return nil, &fs.PathError{Op: op, Path: p, Err: err}
		}
	}
	return nil, &fs.PathError{Op: op, Path: p, Err: unix.EAGAIN}
}

// Open opens the client path p.
func (r *rootFS) Open(p string, flags int, mode uint32) (*os.File, error) {
	rel, err := r.rel("open", p)
	if err != nil {
		return nil, err
	}
	return r.openat("open", p, rel, flags, mode)
}

// parent opens the directory holding p and returns it with p's last name.
// The root itself has no parent inside the root.
func (r *rootFS) parent(op, p string) (*os.File, string, error) {
	rel, err := r.rel(op, p)
	if err != nil {
		return nil, "", err
	}
	if rel == "." {
		return nil, "", &fs.PathError{Op: op, Path: p, Err: unix.EPERM}
	}
	dir, name := path.Split(rel)
	if dir == "" {
		dir = "."
	}
	d, err := r.openat(op, p, dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, "", err
	}
	return d, name, nil
}

// at runs fn with the directory holding p and p's last name.
func (r *rootFS) at(op, p string, fn func(dirfd int, name string) error) error {
	d, name, err := r.parent(op, p)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := fn(int(d.Fd()), name); err != nil {
		return &fs.PathError{Op: op, Path: p, Err: err}
	}
	return nil
}

// Stat is stat(2) of p (follow is true) or lstat(2).
func (r *rootFS) Stat(p string, follow bool) (fs.FileInfo, error) {
	flags := unix.O_PATH
	if !follow {
		flags |= unix.O_NOFOLLOW
	}
	f, err := r.Open(p, flags, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, &fs.PathError{Op: "stat", Path: p, Err: err}
	}
	return newStatInfo(path.Base(path.Clean("/"+p)), &st), nil
}

// ReadDir lists directory p, lstat-ing each entry relative to it.
func (r *rootFS) ReadDir(p string) ([]fs.FileInfo, error) {
	d, err := r.Open(p, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	infos := make([]fs.FileInfo, 0, len(names))
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(int(d.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			continue // removed meanwhile
		}
		infos = append(infos, newStatInfo(name, &st))
	}
	return infos, nil
}

// Readlink returns the target of symlink p as stored.
func (r *rootFS) Readlink(p string) (string, error) {
	var target string
	err := r.at("readlink", p, func(dirfd int, name string) error {
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return err
		}
		target = string(buf[:n])
		return nil
	})
	return target, err
}

// Mkdir creates directory p.
func (r *rootFS) Mkdir(p string, mode uint32) error {
	return r.at("mkdir", p, func(dirfd int, name string) error { return unix.Mkdirat(dirfd, name, mode) })
}

// Remove removes file p (dir false) or empty directory p (dir true).
func (r *rootFS) Remove(p string, dir bool) error {
	flags := 0
	if dir {
		flags = unix.AT_REMOVEDIR
	}
	return r.at("remove", p, func(dirfd int, name string) error { return unix.Unlinkat(dirfd, name, flags) })
}

// Symlink creates symlink p pointing at target (stored as given).
func (r *rootFS) Symlink(target, p string) error {
	return r.at("symlink", p, func(dirfd int, name string) error { return unix.Symlinkat(target, dirfd, name) })
}

// Rename renames oldp to newp; replace false fails when newp exists.
func (r *rootFS) Rename(oldp, newp string, replace bool) error {
	var flags uint
	if !replace {
		flags = unix.RENAME_NOREPLACE
	}
	return r.at("rename", oldp, func(odir int, oname string) error {
		return r.at("rename", newp, func(ndir int, nname string) error {
			return unix.Renameat2(odir, oname, ndir, nname, flags)
		})
	})
}

// Link creates hard link newp to oldp.
func (r *rootFS) Link(oldp, newp string) error {
	return r.at("link", oldp, func(odir int, oname string) error {
		return r.at("link", newp, func(ndir int, nname string) error {
			return unix.Linkat(odir, oname, ndir, nname, 0)
		})
	})
}

// attrs is what a setstat request changes; nil fields stay.
type attrs struct {
	size         *int64
	mode         *fs.FileMode
	uid, gid     *int
	atime, mtime *time.Time
}

// Setstat applies a to p, following a final symlink as chmod(2) does.
func (r *rootFS) Setstat(p string, a attrs) error {
	f, err := r.Open(p, unix.O_PATH, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	// An O_PATH descriptor allows neither fchmod nor ftruncate; its
	// /proc/self/fd link names the very file opened, with no path lookup in
	// the image.
	fdPath := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	wrap := func(op string, err error) error {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return &fs.PathError{Op: op, Path: p, Err: err}
	}
	if a.uid != nil && a.gid != nil {
		if err := unix.Fchownat(int(f.Fd()), "", *a.uid, *a.gid, unix.AT_EMPTY_PATH); err != nil {
			return wrap("chown", err)
		}
	}
	if a.mode != nil {
		if err := os.Chmod(fdPath, *a.mode); err != nil {
			return wrap("chmod", err)
		}
	}
	if a.size != nil {
		if err := os.Truncate(fdPath, *a.size); err != nil {
			return wrap("truncate", err)
		}
	}
	if a.atime != nil && a.mtime != nil {
		if err := os.Chtimes(fdPath, *a.atime, *a.mtime); err != nil {
			return wrap("chtimes", err)
		}
	}
	return nil
}
