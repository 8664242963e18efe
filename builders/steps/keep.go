package steps

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/imsbuild/imsbuild/cache"
)

// keepTree offers the root a step just packed into the squashfs file sq
// to the tree cache, so that the image's first child mounts it instead of
// unpacking the rootfs: it is moved there, not copied. Only a root that
// can be made exactly what unsquashfs of sq gives is kept (see
// asUnpacked); any doubt leaves it where it is, logged, and the first
// child unpacks the rootfs as before. Nothing here fails the step.
//
// keepTree makes the root what unsquashfs gives (sq must still be there)
// and returns the function that keeps it once the rootfs is stored as d,
// or nil when there is no tree cache to keep it in.
func (o *Image) keepTree(ctx context.Context, env Env, root, sq string, epoch int64) func(d cache.Digest) {
	tc := treesOf(env.Store)
	if tc == nil || os.Geteuid() != 0 {
		return nil
	}
	start := time.Now()
	err := asUnpacked(ctx, root, sq, epoch)
	took := time.Since(start) // the store runs between the two halves
	return func(d cache.Digest) {
		start := time.Now()
		kept := false
		if err == nil {
			kept, err = tc.KeepTree(ctx, d, root)
		}
		switch {
		case err != nil:
			fmt.Fprintf(env.Log, "root not kept as the tree of rootfs %s: %v\n", d, err)
		case kept:
			took += time.Since(start)
			fmt.Fprintf(env.Log, "root kept as the tree of rootfs %s for the image's children (%v)\n", d, took.Round(time.Millisecond))
		}
	}
}

// asUnpacked makes root, which mksquashfs packed into the squashfs file sq
// at epoch, what unsquashfs of sq gives: the entries that pack excluded
// are removed (the listing of sq says which) and every time is set to the
// epoch (pack's -all-time). It refuses, leaving root partly changed, what
// it cannot make equal: an entry of sq missing from root, a name with a
// newline (which the listing cannot carry), an extended attribute that
// squashfs does not store (only user., trusted. and security. ones are).
func asUnpacked(ctx context.Context, root, sq string, epoch int64) error {
	listed, err := listSquashfs(ctx, sq)
	if err != nil {
		return err
	}
	var excluded []string
	found := 0
	ts := []unix.Timespec{{Sec: epoch}, {Sec: epoch}}
	err = filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(p[len(root):], "/")
		if strings.Contains(rel, "\n") {
			return fmt.Errorf("%q: a name with a newline", rel)
		}
		if _, ok := listed[rel]; !ok {
			excluded = append(excluded, p)
			if de.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		found++
		if err := checkXattrs(p); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
	})
	if err != nil {
		return err
	}
	if found != len(listed) {
		return fmt.Errorf("the root has %d of the %d entries of the rootfs", found, len(listed))
	}
	// Removed last: a directory's time set above changes again when an
	// excluded entry of it goes.
	dirs := map[string]bool{}
	for _, p := range excluded {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
		dirs[filepath.Dir(p)] = true
	}
	for d := range dirs {
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, d, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
	}
	return nil
}

// listSquashfs returns the paths in the squashfs file sq, relative to its
// root ("" for the root).
func listSquashfs(ctx context.Context, sq string) (map[string]struct{}, error) {
	cmd := exec.CommandContext(ctx, "unsquashfs", "-q", "-no-progress", "-l", "-d", "r", sq)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("list %s: %w", sq, err)
	}
	listed := map[string]struct{}{}
	s := bufio.NewScanner(out)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		line := s.Text()
		if line == "r" {
			listed[""] = struct{}{}
		} else if rel, ok := strings.CutPrefix(line, "r/"); ok {
			listed[rel] = struct{}{}
		}
	}
	serr := s.Err()
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("list %s: %w: %s", sq, err, strings.TrimSpace(stderr.String()))
	}
	if serr != nil {
		return nil, fmt.Errorf("list %s: %w", sq, serr)
	}
	return listed, nil
}

// squashfsXattrs are the prefixes of the extended attributes squashfs
// stores; mksquashfs leaves out any other (system.posix_acl_*).
var squashfsXattrs = []string{"user.", "trusted.", "security."}

// checkXattrs refuses an entry with an attribute squashfs does not store.
func checkXattrs(p string) error {
	buf := make([]byte, 4<<10)
	n, err := unix.Llistxattr(p, buf)
	if errors.Is(err, unix.ERANGE) {
		if n, err = unix.Llistxattr(p, nil); err == nil {
			buf = make([]byte, n)
			n, err = unix.Llistxattr(p, buf)
		}
	}
	if errors.Is(err, unix.ENOTSUP) {
		return nil
	}
	if err != nil {
		return err
	}
	for name := range strings.SplitSeq(string(buf[:n]), "\x00") {
		if name != "" && !slices.ContainsFunc(squashfsXattrs, func(pre string) bool { return strings.HasPrefix(name, pre) }) {
			return fmt.Errorf("attribute %s is not kept by squashfs", name)
		}
	}
	return nil
}
