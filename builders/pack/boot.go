package pack

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/imsbuild/imsbuild/ims"
)

// bootFiles are the kernel, initrd and kernel parameters found in a root,
// open for reading (nil when absent).
type bootFiles struct{ kernel, initrd, params *os.File }

func (b *bootFiles) close() {
	for _, f := range []*os.File{b.kernel, b.initrd, b.params} {
		if f != nil {
			f.Close()
		}
	}
}

// kernelPrefixes are the versioned kernel names: vmlinuz-<v>, Image-<v>.
func kernelPrefixes() []string { return []string{"vmlinuz-", "Image-"} }

// findBoot looks up kernel and initrd in root/boot. Every lookup resolves
// symlinks as if root were "/", so nothing outside root is ever opened.
func findBoot(root string, opts Options) (*bootFiles, error) {
	rootfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open root: %w", err)
	}
	defer unix.Close(rootfd)
	b := &bootFiles{}
	names, err := bootNames(rootfd)
	if err != nil {
		return nil, err
	}
	// IMS packs <root>/boot/kernel-parameters when it is a file (test -f,
	// which follows symlinks) as the boot_parameters artifact.
	if b.params, err = openInRoot(rootfd, "boot/"+ims.KernelParametersFile); err != nil {
		return nil, err
	}

	kernelVersion := ""
	kname := hintPath(hint(opts.KernelFileName, "vmlinuz"))
	if b.kernel, err = openInRoot(rootfd, kname); err != nil {
		b.close()
		return nil, err
	}
	if b.kernel != nil {
		kernelVersion = versionOfLink(rootfd, kname)
	} else {
		best := ""
		for _, n := range names {
			for _, p := range kernelPrefixes() {
				if v, ok := strings.CutPrefix(n, p); ok && v != "" && (best == "" || versionLess(kernelVersion, v)) {
					f, err := openInRoot(rootfd, "boot/"+n)
					if err != nil {
						b.close()
						return nil, err
					}
					if f == nil {
						continue
					}
					if b.kernel != nil {
						b.kernel.Close()
					}
					b.kernel, best, kernelVersion = f, n, v
				}
			}
		}
	}

	iname := hintPath(hint(opts.InitrdFileName, "initrd"))
	if b.initrd, err = openInRoot(rootfd, iname); err != nil {
		b.close()
		return nil, err
	}
	if b.initrd != nil {
		return b, nil
	}
	bestVersion, exact := "", false
	for _, n := range names {
		v, ok := initrdVersion(n)
		if !ok {
			continue
		}
		match := kernelVersion != "" && v == kernelVersion
		if exact || (b.initrd != nil && !match && !versionLess(bestVersion, v)) {
			continue
		}
		f, err := openInRoot(rootfd, "boot/"+n)
		if err != nil {
			b.close()
			return nil, err
		}
		if f == nil {
			continue
		}
		if b.initrd != nil {
			b.initrd.Close()
		}
		b.initrd, bestVersion, exact = f, v, match
	}
	return b, nil
}

// hintPath maps a file name hint to a root-relative path: a bare name is
// in /boot, a name with a slash is relative to the root.
func hintPath(name string) string {
	if strings.Contains(name, "/") {
		return strings.TrimLeft(path.Clean("/"+name), "/")
	}
	return "boot/" + name
}

func initrdVersion(name string) (string, bool) {
	if strings.Contains(name, "kdump") {
		return "", false
	}
	patterns := []struct{ prefix, suffix string }{{"initrd.img-", ""}, {"initrd-", ""}, {"initramfs-", ".img"}}
	for _, p := range patterns {
		if v, ok := strings.CutPrefix(name, p.prefix); ok {
			if v, ok = strings.CutSuffix(v, p.suffix); ok && v != "" {
				return v, true
			}
		}
	}
	return "", false
}

// bootNames lists /boot of the root (nil when there is none).
func bootNames(rootfd int) ([]string, error) {
	fd, err := openat2InRoot(rootfd, "boot", unix.O_RDONLY|unix.O_DIRECTORY)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open /boot: %w", err)
	}
	f := os.NewFile(uintptr(fd), "boot")
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read /boot: %w", err)
	}
	return names, nil
}

// openInRoot opens the regular file rel of the root, resolving symlinks
// inside the root; it returns nil, nil when there is no such regular file.
func openInRoot(rootfd int, rel string) (*os.File, error) {
	// O_NONBLOCK: a fifo named like a kernel must not hang the open.
	fd, err := openat2InRoot(rootfd, rel, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY)
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ELOOP), errors.Is(err, unix.EXDEV):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("open /%s: %w", rel, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, nil
	}
	return os.NewFile(uintptr(fd), "/"+rel), nil
}

func openat2InRoot(rootfd int, rel string, flags int) (int, error) {
	how := &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	for {
		fd, err := unix.Openat2(rootfd, rel, how)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.ENOSYS) {
			return -1, fmt.Errorf("openat2 (Linux 5.6 or later) is required: %w", err)
		}
		return fd, err
	}
}

// versionOfLink returns the version of a kernel hint that is a symlink to
// vmlinuz-<version> or Image-<version>, so the matching initrd is chosen.
func versionOfLink(rootfd int, rel string) string {
	fd, err := openat2InRoot(rootfd, rel, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return ""
	}
	defer unix.Close(fd)
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(fd, "", buf)
	if err != nil {
		return ""
	}
	base := path.Base(string(buf[:n]))
	for _, p := range kernelPrefixes() {
		if v, ok := strings.CutPrefix(base, p); ok {
			return v
		}
	}
	return ""
}

// versionLess compares kernel versions naturally: runs of digits compare
// as numbers ("6.1.0-10" > "6.1.0-9"), the rest byte by byte.
func versionLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := digits(a), digits(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func digits(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}
