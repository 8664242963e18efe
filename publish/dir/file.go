package dir

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/imsbuild/imsbuild/internal/ctxio"
	"github.com/imsbuild/imsbuild/publish"
)

// createFile writes data to a new file at path and syncs it.
func createFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeFile replaces path with data atomically (temp file, sync, rename,
// dir sync), leaving an identical file untouched.
func writeFile(path string, data []byte) error {
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, data) {
		return nil
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncFile checks the size of a materialized file and flushes it.
func syncFile(path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != size {
		return fmt.Errorf("%s has %d bytes, want %d", path, fi.Size(), size)
	}
	return f.Sync()
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// copyBlob writes blob d to the new file dst: a reflink of its local file
// when the filesystem can make one (checked by hashing the copy, as nothing
// else reads it), else a copy through Blobs.Open, verified as it streams.
// Never a hard link: a published file may be changed, a blob must not.
func copyBlob(ctx context.Context, blobs publish.Blobs, d digest.Digest, dst string) error {
	if src, ok := blobs.Path(ctx, d); ok {
		if reflink(src, dst) == nil {
			got, err := fileDigest(ctx, dst)
			if err == nil && got == d {
				return nil
			}
			os.Remove(dst)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// A corrupt local file: the verified copy below says so.
		}
	}
	rc, err := blobs.Open(ctx, d)
	if err != nil {
		return err
	}
	defer rc.Close()
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, ctxio.Reader(ctx, rc))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// reflink makes dst a new file sharing src's extents (FICLONE): an instant
// copy on btrfs, XFS and other CoW filesystems, an error elsewhere.
func reflink(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	err = unix.IoctlFileClone(int(out.Fd()), int(in.Fd()))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
	}
	return err
}

// fileDigest is the sha256 digest of the file at path.
func fileDigest(ctx context.Context, path string) (digest.Digest, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return digest.SHA256.FromReader(ctxio.Reader(ctx, f))
}
