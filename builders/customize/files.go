package customize

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"syscall"

	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/spec"
)

// copyFile copies the host file f.Source to f.Dest inside root. Symlinks on
// the way are followed within root, and refused when they lead out of it.
// Missing parent directories are created (0755). An existing file is
// replaced atomically.
//
// The file gets f.Mode when f.HasMode, else the source's mode (both with
// their set-user-ID, set-group-ID and sticky bits). It gets f.Owner when set
// (names from the image's /etc/passwd and /etc/group); otherwise, and for
// the gid of an owner without a group, a replaced file keeps its owner and a
// new one is owned by the builder (root). Owner and mode are set on the
// temporary file before it is renamed into place, so the destination never
// exists with another owner or mode.
func copyFile(root string, f spec.FileCopy) error {
	if !path.IsAbs(f.Dest) {
		return fmt.Errorf("copy %s: destination %q is not absolute", f.Source, f.Dest)
	}
	rel, err := sandbox.ResolveIn(root, f.Dest)
	if err != nil {
		return fmt.Errorf("copy %s: %w", f.Source, err)
	}
	if rel == "/" {
		return fmt.Errorf("copy %s: destination %q is the image root", f.Source, f.Dest)
	}
	owner, err := resolveOwner(root, f.Owner)
	if err != nil {
		return fmt.Errorf("file %s: %w", f.Dest, err)
	}
	src, err := os.Open(f.Source)
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("copy %s: not a regular file", f.Source)
	}
	dst := filepath.Join(root, rel)
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("copy %s: %w", f.Source, err)
	}
	old, err := os.Lstat(dst)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		old = nil
	case err != nil:
		return fmt.Errorf("copy %s: %w", f.Source, err)
	case !old.Mode().IsRegular():
		return fmt.Errorf("copy %s: destination %s is not a regular file", f.Source, f.Dest)
	}
	tmp, err := os.CreateTemp(dir, ".imsbuild-copy-*")
	if err != nil {
		return fmt.Errorf("copy %s: %w", f.Source, err)
	}
	mode := fi.Mode()
	if f.HasMode {
		mode = f.Mode
	}
	if err := writeFile(tmp, src, mode, owner, old); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("copy %s to %s: %w", f.Source, f.Dest, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("copy %s: %w", f.Source, err)
	}
	return nil
}

// writeFile streams src into tmp, sets its owner (the ids of owner; those
// it keeps come from the replaced file old, if any) and mode, and closes tmp.
func writeFile(tmp *os.File, src io.Reader, mode fs.FileMode, owner ids, old fs.FileInfo) error {
	_, err := io.Copy(tmp, src)
	if err == nil {
		if old != nil {
			if st, ok := old.Sys().(*syscall.Stat_t); ok {
				if owner.uid < 0 {
					owner.uid = int(st.Uid)
				}
				if owner.gid < 0 {
					owner.gid = int(st.Gid)
				}
			}
		}
		if owner != keep() {
			err = tmp.Chown(owner.uid, owner.gid)
		}
	}
	if err == nil {
		// After Chown, which clears set-user-ID bits.
		err = tmp.Chmod(mode & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky))
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	return err
}
