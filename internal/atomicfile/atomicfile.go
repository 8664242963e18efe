package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// File is a temporary file that becomes its target path on Commit.
// It is not safe for concurrent use.
type File struct {
	f      *os.File
	target string
	perm   os.FileMode
	done   bool
}

// Create returns a temporary file in the directory of path that Commit
// renames to path with permission perm.
func Create(path string, perm os.FileMode) (*File, error) {
	return CreateTemp(filepath.Dir(path), path, perm)
}

// CreateTemp returns a temporary file in dir (which must be on the same
// filesystem as the final path) that Commit renames to path. path may be
// empty when the destination is only known later; use CommitAs then.
func CreateTemp(dir, path string, perm os.FileMode) (*File, error) {
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return nil, fmt.Errorf("create temp file in %s: %w", dir, err)
	}
	return &File{f: f, target: path, perm: perm}, nil
}

// Name returns the path of the temporary file.
func (f *File) Name() string { return f.f.Name() }

// OSFile returns the underlying temporary file, for calls such as a reflink
// ioctl that need its descriptor. Do not Close it.
func (f *File) OSFile() *os.File { return f.f }

// Write writes p to the temporary file.
func (f *File) Write(p []byte) (int, error) { return f.f.Write(p) }

// ReadFrom copies r into the temporary file, letting the kernel copy
// (copy_file_range, sendfile) when r is a file.
func (f *File) ReadFrom(r io.Reader) (int64, error) { return f.f.ReadFrom(r) }

// Commit fsyncs the temporary file, renames it to the path given at
// creation and fsyncs the directory.
func (f *File) Commit() error {
	if f.target == "" {
		f.Abort()
		return errors.New("commit temp file: no target path")
	}
	return f.CommitAs(f.target)
}

// CommitAs is Commit to an explicit path, which must be on the same
// filesystem as the temporary file.
func (f *File) CommitAs(path string) error {
	if f.done {
		return fmt.Errorf("commit %s: already committed or aborted", path)
	}
	f.done = true
	name := f.f.Name()
	err := f.f.Chmod(f.perm)
	if err == nil {
		err = f.f.Sync()
	}
	if cerr := f.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(name, path)
	}
	if err != nil {
		_ = os.Remove(name)
		return fmt.Errorf("commit %s: %w", path, err)
	}
	if err := SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("commit %s: %w", path, err)
	}
	return nil
}

// Abort closes and removes the temporary file. It does nothing after Commit
// or a previous Abort, so it can be deferred.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	_ = f.f.Close()
	_ = os.Remove(f.f.Name())
}

// WriteFile atomically replaces path with data and permission perm.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	return f.Commit()
}

// SyncDir fsyncs the directory dir so that renames and new entries in it
// survive a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
