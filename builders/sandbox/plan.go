package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// mountKind is what a mount puts at its destination.
type mountKind string

const (
	kindBind  mountKind = "bind"  // Source bound at Dest
	kindTmpfs mountKind = "tmpfs" // a fresh tmpfs
	kindProc  mountKind = "proc"  // procfs of the sandbox's PID namespace
	kindDev   mountKind = "dev"   // a minimal /dev
	// kindContainerProc binds the container's procfs where kindProc cannot
	// mount one (native backend in a user namespace, see userns.go).
	kindContainerProc mountKind = "container-proc"
)

// Hostname is the host name inside every sandbox.
const Hostname = "imsbuild"

// ImageDir is where the image root appears in a non-jailed sandbox.
const ImageDir = "/mnt/image"

// mount is one mount of a plan, applied in order on top of the new root.
type mount struct {
	Kind     mountKind `json:"kind"`
	Source   string    `json:"source,omitempty"` // host path (bind)
	Dest     string    `json:"dest"`             // absolute in the sandbox, free of symlinks
	ReadOnly bool      `json:"ro,omitempty"`
	File     bool      `json:"file,omitempty"` // the mountpoint is a file (bind of a non-directory)
	Mode     string    `json:"mode,omitempty"` // tmpfs mode, octal
	Size     int64     `json:"size,omitempty"` // tmpfs size in bytes; 0: the kernel's default (half the RAM)
}

// mountDirSize is the size of the tmpfs holding the /mnt/image mountpoint.
const mountDirSize = 1 << 20

// plan is the mount layout of one run, shared by every backend. Building it
// creates the mountpoints missing in host directories (the image root, bind
// sources); cleanup removes them again.
type plan struct {
	jail    bool
	root    string // the image root on the host
	base    string // the host dir that becomes "/": root, the builder root, or "" for the host root
	mounts  []mount
	created []string // host paths created as mountpoints, in creation order
}

// newPlan lays out the mounts of s and creates their missing mountpoints.
// The caller must call cleanup when the sandbox is gone, even on error.
func newPlan(s Spec) (*plan, error) {
	if len(s.Args) == 0 {
		return nil, errors.New("sandbox: no command")
	}
	if err := checkRoot("root", s.Root); err != nil {
		return nil, err
	}
	p := &plan{jail: s.Jail, root: s.Root, base: s.Root}
	if !s.Jail {
		p.base = s.BuilderRoot
		if err := checkRoot("builder root", s.BuilderRoot); s.BuilderRoot != "" && err != nil {
			return nil, err
		}
	}
	tmpSize := s.TmpSize
	if tmpSize <= 0 {
		tmpSize = DefaultTmpSize
	}
	tmp := mount{Kind: kindTmpfs, Dest: "/tmp", Mode: "1777", Size: tmpSize}
	if s.TmpDir != "" {
		tmp = mount{Kind: kindBind, Source: s.TmpDir, Dest: "/tmp"}
	}
	if s.Jail {
		p.mounts = append(p.mounts, mount{Kind: kindProc, Dest: "/proc"}, mount{Kind: kindDev, Dest: "/dev"}, tmp)
	} else {
		p.mounts = append(p.mounts, mount{Kind: kindDev, Dest: "/dev"}, mount{Kind: kindProc, Dest: "/proc"}, tmp)
		if !p.baseHasDir(ImageDir) {
			p.mounts = append(p.mounts, mount{Kind: kindTmpfs, Dest: path.Dir(ImageDir), Mode: "0755", Size: mountDirSize})
		}
		p.mounts = append(p.mounts, mount{Kind: kindBind, Source: s.Root, Dest: ImageDir})
	}
	if s.Network && p.base != "" && regularFile("/etc/resolv.conf") && p.baseHasFile("/etc/resolv.conf") {
		p.mounts = append(p.mounts, mount{Kind: kindBind, Source: "/etc/resolv.conf", Dest: "/etc/resolv.conf", ReadOnly: true})
	}
	for _, b := range s.Binds {
		if !path.IsAbs(b.Dest) {
			return p, fmt.Errorf("sandbox bind %s: destination %q is not absolute", b.Source, b.Dest)
		}
		p.mounts = append(p.mounts, mount{Kind: kindBind, Source: b.Source, Dest: b.Dest, ReadOnly: b.ReadOnly})
	}
	for i := range p.mounts {
		if err := p.place(i); err != nil {
			return p, err
		}
	}
	return p, nil
}

// checkRoot checks that dir, the sandbox's what, is an absolute path to a
// directory.
func checkRoot(what, dir string) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("sandbox %s %q: not an absolute path", what, dir)
	}
	if fi, err := os.Stat(dir); err != nil {
		return fmt.Errorf("sandbox %s: %w", what, err)
	} else if !fi.IsDir() {
		return fmt.Errorf("sandbox %s %s: not a directory", what, dir)
	}
	return nil
}

// regularFile reports whether the host path name is (or links to) a regular file.
func regularFile(name string) bool {
	fi, err := os.Stat(name)
	return err == nil && fi.Mode().IsRegular()
}

// baseHasFile reports whether the new root (not the host's) has a regular
// file at name.
func (p *plan) baseHasFile(name string) bool {
	fi, err := p.baseStat(name)
	return err == nil && fi.Mode().IsRegular()
}

// baseHasDir reports whether the new root has a directory at name.
func (p *plan) baseHasDir(name string) bool {
	fi, err := p.baseStat(name)
	return err == nil && fi.IsDir()
}

// baseStat describes name as seen inside the new root.
func (p *plan) baseStat(name string) (fs.FileInfo, error) {
	if p.base == "" {
		return os.Stat(name)
	}
	r, err := ResolveIn(p.base, name)
	if err != nil {
		return nil, err
	}
	return os.Lstat(filepath.Join(p.base, r))
}

// under reports whether the clean absolute path a is dir or inside it.
func under(a, dir string) bool {
	return a == dir || dir == "/" || strings.HasPrefix(a, dir+"/")
}

// place resolves the destination of mount i and, when it lives in a host
// directory (the image root or the source of an earlier bind), creates its
// missing mountpoint there. Mountpoints inside fresh filesystems (tmpfs, proc,
// dev) are created inside the sandbox; mountpoints on the read-only host root
// of a non-jailed sandbox must already exist. A non-jailed sandbox with a
// builder root gets its missing mountpoints created there like in the image
// root.
func (p *plan) place(i int) error {
	m := &p.mounts[i]
	if m.Kind == kindBind {
		fi, err := os.Stat(m.Source)
		if err != nil {
			return fmt.Errorf("sandbox bind: %w", err)
		}
		m.File = !fi.IsDir()
	}
	dest := path.Clean(m.Dest)
	if p.base != "" {
		r, err := ResolveIn(p.base, dest)
		if err != nil {
			return fmt.Errorf("sandbox mount %s: %w", m.Dest, err)
		}
		dest = r
	}
	var cover *mount
	for j := i - 1; j >= 0; j-- {
		if under(dest, p.mounts[j].Dest) {
			cover = &p.mounts[j]
			break
		}
	}
	var base, rel string
	switch {
	case cover == nil && p.base != "":
		base, rel = p.base, dest
	case cover == nil:
		m.Dest = dest
		if _, err := os.Stat(dest); err != nil {
			return fmt.Errorf("sandbox mount %s: the mountpoint must exist in the read-only host root: %w", dest, err)
		}
		return nil
	case cover.Kind == kindBind:
		r, err := ResolveIn(cover.Source, strings.TrimPrefix(dest, cover.Dest))
		if err != nil {
			return fmt.Errorf("sandbox mount %s: %w", m.Dest, err)
		}
		dest = path.Join(cover.Dest, r)
		base, rel = cover.Source, r
	default:
		m.Dest = dest
		return nil
	}
	m.Dest = dest
	return p.ensure(base, rel, !m.File, m.mountpointMode())
}

// mountpointMode is the mode of a mountpoint created for m: a tmpfs's own
// mode, since runc gives a tmpfs the mode of the directory it covers.
func (m *mount) mountpointMode() fs.FileMode {
	mode, err := strconv.ParseUint(m.Mode, 8, 32)
	if m.Kind != kindTmpfs || err != nil {
		return 0o755
	}
	fm := fs.FileMode(mode).Perm()
	if mode&0o1000 != 0 {
		fm |= fs.ModeSticky
	}
	return fm
}

// ensure creates the missing components of rel under base, the last one a
// directory of the given mode or an empty file, and records what it created.
func (p *plan) ensure(base, rel string, dir bool, mode fs.FileMode) error {
	comps := strings.Split(strings.Trim(rel, "/"), "/")
	cur := base
	for k, c := range comps {
		if c == "" {
			continue
		}
		cur = filepath.Join(cur, c)
		last := k == len(comps)-1
		fi, err := os.Lstat(cur)
		if err == nil {
			if !last && !fi.IsDir() {
				return fmt.Errorf("sandbox mountpoint %s: not a directory", cur)
			}
			continue
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("sandbox mountpoint: %w", err)
		}
		if last && !dir {
			f, err := os.OpenFile(cur, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				return fmt.Errorf("sandbox mountpoint: %w", err)
			}
			if err := f.Close(); err != nil {
				return fmt.Errorf("sandbox mountpoint: %w", err)
			}
		} else if err := os.Mkdir(cur, 0o755); err != nil {
			return fmt.Errorf("sandbox mountpoint: %w", err)
		}
		p.created = append(p.created, cur)
		if last && dir && mode != 0o755 {
			if err := os.Chmod(cur, mode); err != nil {
				return fmt.Errorf("sandbox mountpoint: %w", err)
			}
		}
	}
	return nil
}

// cleanup removes the mountpoints the plan created, newest first. A directory
// the command filled is left alone. It runs after the sandbox is gone, when
// nothing is mounted on them any more.
func (p *plan) cleanup() error {
	if p == nil {
		return nil
	}
	var errs []error
	for i := len(p.created) - 1; i >= 0; i-- {
		if err := removeMountpoint(p.created[i]); err != nil {
			errs = append(errs, err)
		}
	}
	p.created = nil
	return errors.Join(errs...)
}

// removeMountpoint removes name, retrying briefly while the kernel still
// tears down the sandbox's mount namespace (EBUSY).
func removeMountpoint(name string) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := os.Remove(name)
		switch {
		case err == nil, errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTEMPTY), errors.Is(err, syscall.EEXIST):
			return nil
		case errors.Is(err, syscall.EBUSY) && time.Now().Before(deadline):
			time.Sleep(5 * time.Millisecond)
			continue
		}
		return fmt.Errorf("sandbox cleanup: %w", err)
	}
}
