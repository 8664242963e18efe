package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
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
}

// plan is the mount layout of one run, shared by every backend. Building it
// creates the mountpoints missing in host directories (the image root, bind
// sources); cleanup removes them again.
type plan struct {
	jail    bool
	root    string // the image root on the host
	mounts  []mount
	created []string // host paths created as mountpoints, in creation order
}

// newPlan lays out the mounts of s and creates their missing mountpoints.
// The caller must call cleanup when the sandbox is gone, even on error.
func newPlan(s Spec) (*plan, error) {
	if len(s.Args) == 0 {
		return nil, errors.New("sandbox: no command")
	}
	if !filepath.IsAbs(s.Root) {
		return nil, fmt.Errorf("sandbox root %q: not an absolute path", s.Root)
	}
	if fi, err := os.Stat(s.Root); err != nil {
		return nil, fmt.Errorf("sandbox root: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("sandbox root %s: not a directory", s.Root)
	}
	p := &plan{jail: s.Jail, root: s.Root}
	tmp := mount{Kind: kindTmpfs, Dest: "/tmp", Mode: "1777"}
	if s.TmpDir != "" {
		tmp = mount{Kind: kindBind, Source: s.TmpDir, Dest: "/tmp"}
	}
	if s.Jail {
		p.mounts = append(p.mounts, mount{Kind: kindProc, Dest: "/proc"}, mount{Kind: kindDev, Dest: "/dev"}, tmp)
		if s.Network && regularFile("/etc/resolv.conf") && p.imageHasFile("/etc/resolv.conf") {
			p.mounts = append(p.mounts, mount{Kind: kindBind, Source: "/etc/resolv.conf", Dest: "/etc/resolv.conf", ReadOnly: true})
		}
	} else {
		p.mounts = append(p.mounts, mount{Kind: kindDev, Dest: "/dev"}, mount{Kind: kindProc, Dest: "/proc"}, tmp)
		if fi, err := os.Stat(ImageDir); err != nil || !fi.IsDir() {
			p.mounts = append(p.mounts, mount{Kind: kindTmpfs, Dest: path.Dir(ImageDir), Mode: "0755"})
		}
		p.mounts = append(p.mounts, mount{Kind: kindBind, Source: s.Root, Dest: ImageDir})
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

// regularFile reports whether the host path name is (or links to) a regular file.
func regularFile(name string) bool {
	fi, err := os.Stat(name)
	return err == nil && fi.Mode().IsRegular()
}

// imageHasFile reports whether the image has a regular file at name.
func (p *plan) imageHasFile(name string) bool {
	r, err := ResolveIn(p.root, name)
	if err != nil {
		return false
	}
	fi, err := os.Lstat(filepath.Join(p.root, r))
	return err == nil && fi.Mode().IsRegular()
}

// under reports whether the clean absolute path a is dir or inside it.
func under(a, dir string) bool {
	return a == dir || dir == "/" || strings.HasPrefix(a, dir+"/")
}

// place resolves the destination of mount i and, when it lives in a host
// directory (the image root or the source of an earlier bind), creates its
// missing mountpoint there. Mountpoints inside fresh filesystems (tmpfs, proc,
// dev) are created inside the sandbox; mountpoints on the read-only host root
// of a non-jailed sandbox must already exist.
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
	if p.jail {
		r, err := ResolveIn(p.root, dest)
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
	case cover == nil && p.jail:
		base, rel = p.root, dest
	case cover == nil:
		m.Dest = dest
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
	return p.ensure(base, rel, !m.File)
}

// ensure creates the missing components of rel under base, the last one a
// directory or an empty file, and records what it created.
func (p *plan) ensure(base, rel string, dir bool) error {
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
