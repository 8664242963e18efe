package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// ErrEscape is returned by [ResolveIn] for a path that leaves the root.
var ErrEscape = errors.New("path escapes the image root")

// maxLinks bounds symlink resolution, as the kernel's ELOOP does.
const maxLinks = 40

// ResolveIn resolves p (a path inside the image root on the host root) the way
// a process chrooted into root would see it, following symlinks without ever
// leaving root: absolute link targets start again at root. It returns the
// resolved absolute path inside the image, free of symlinks; components that
// do not exist are kept as they are. A ".." that would climb above root, from
// p or from a link target, is refused with ErrEscape.
func ResolveIn(root, p string) (string, error) {
	resolved := "/"
	remaining := p
	links := 0
	for remaining != "" {
		var comp string
		comp, remaining, _ = strings.Cut(remaining, "/")
		switch comp {
		case "", ".":
			continue
		case "..":
			if resolved == "/" {
				return "", fmt.Errorf("resolve %s in %s: %w", p, root, ErrEscape)
			}
			resolved = path.Dir(resolved)
			continue
		}
		next := path.Join(resolved, comp)
		host := filepath.Join(root, next)
		fi, err := os.Lstat(host)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			resolved = next
			continue
		case err != nil:
			return "", fmt.Errorf("resolve %s in %s: %w", p, root, err)
		case fi.Mode()&fs.ModeSymlink == 0:
			resolved = next
			continue
		}
		links++
		if links > maxLinks {
			return "", fmt.Errorf("resolve %s in %s: too many levels of symbolic links", p, root)
		}
		target, err := os.Readlink(host)
		if err != nil {
			return "", fmt.Errorf("resolve %s in %s: %w", p, root, err)
		}
		if path.IsAbs(target) {
			resolved = "/"
		}
		remaining = target + "/" + remaining
	}
	return resolved, nil
}
