package steps

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/imsbuild/imsbuild/builders/importer"
	"github.com/imsbuild/imsbuild/builders/overlay"
	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/local"
	"github.com/imsbuild/imsbuild/ims"
)

// storeArtifacts puts artifact files (name → path) into the store with
// their md5 (IMS manifests need it) and returns them as a step result.
func storeArtifacts(ctx context.Context, store cache.Store, files map[string]string, log io.Writer) (*cache.ActionResult, error) {
	res := &cache.ActionResult{Outputs: map[string]cache.Output{}}
	for _, name := range ims.ArtifactNames() { // stored and logged in IMS's order
		path, ok := files[name]
		if !ok {
			continue
		}
		out, err := storeWithMD5(ctx, store, path)
		if err != nil {
			return nil, fmt.Errorf("store %s: %w", name, err)
		}
		out.MediaType = ims.MediaTypeOf(name)
		res.Outputs[name] = out
		fmt.Fprintf(log, "%s %s %d bytes\n", name, out.Digest, out.Size)
	}
	if path, ok := files[ims.SBOMFile]; ok {
		// Not an IMS artifact: its own media type keeps it out of manifests.
		out, err := storeWithMD5(ctx, store, path)
		if err != nil {
			return nil, fmt.Errorf("store %s: %w", ims.SBOMFile, err)
		}
		out.MediaType = ims.MediaTypeSPDX
		res.Outputs[ims.SBOMFile] = out
		fmt.Fprintf(log, "%s %s %d bytes\n", ims.SBOMFile, out.Digest, out.Size)
	}
	if _, ok := res.Outputs[ims.ArtifactRootfs]; !ok {
		return nil, errors.New("no rootfs artifact")
	}
	return res, nil
}

// storeWithMD5 puts a file into the store with its md5 computed beside
// the sha256, on another core. A local cache takes the file itself
// (local.Cache.AdoptFile: hashed and moved, not copied; the md5 reads the
// file on its own, at once): every file given here is the step's own
// output in its scratch directory, which nothing writes to any more.
// Another store reads it once, md5 from what it reads.
func storeWithMD5(ctx context.Context, store cache.Store, path string) (cache.Output, error) {
	if l := localOf(store); l != nil {
		h := md5.New()
		d, size, err := l.AdoptFile(ctx, path, h)
		if err == nil {
			return cache.Output{Digest: d, Size: size, MD5: hex.EncodeToString(h.Sum(nil))}, nil
		}
		if !errors.Is(err, local.ErrNotAdopted) {
			return cache.Output{}, err
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return cache.Output{}, err
	}
	defer f.Close()
	return withMD5(func(w io.Writer) (cache.Digest, int64, error) { return store.Put(ctx, io.TeeReader(f, w), "") })
}

// withMD5 runs put, which stores a file and writes every byte of it to w,
// and returns its output with the md5 of what put wrote to w.
func withMD5(put func(w io.Writer) (cache.Digest, int64, error)) (cache.Output, error) {
	pr, pw := io.Pipe()
	h := md5.New()
	done := make(chan error, 1)
	go func() {
		_, err := io.CopyBuffer(h, pr, make([]byte, 1<<20))
		pr.CloseWithError(err)
		done <- err
	}()
	d, size, err := put(pw)
	pw.CloseWithError(err)
	if herr := <-done; err == nil && herr != nil && herr != io.ErrClosedPipe {
		err = herr
	}
	if err != nil {
		return cache.Output{}, err
	}
	return cache.Output{Digest: d, Size: size, MD5: hex.EncodeToString(h.Sum(nil))}, nil
}

// unpack restores a squashfs blob into the empty directory root. The store
// verifies the blob first: unsquashfs must never read corrupt bytes into a
// root that gets cached. A store whose blobs are files lets unsquashfs read
// the blob in place.
func unpack(ctx context.Context, store cache.Store, d cache.Digest, work, root string) error {
	var err error
	if fu, ok := store.(cache.FileUser); ok {
		err = fu.UseFile(ctx, d, func(p string) error { return importer.Import(ctx, p, root) })
	} else {
		sq := filepath.Join(work, "unpack.squashfs")
		defer os.Remove(sq)
		if err = store.Materialize(ctx, d, sq, true); err == nil {
			err = importer.Import(ctx, sq, root)
		}
	}
	if errors.Is(err, cache.ErrCorrupt) {
		return fmt.Errorf("restore %s: %w (dropped with the results built on it: the next build makes it again)", d, err)
	}
	if err != nil {
		return fmt.Errorf("restore %s: %w", d, err)
	}
	return nil
}

// mountParent mounts the parent's rootfs d read-only under an overlay in
// the step's scratch directory and returns it: the root to customize and
// pack, without unpacking (see builders/overlay). It returns nil, having
// logged why, when the host cannot (not root, no loop devices or
// overlayfs), o.UnpackParent says not to, or packedHere is false (the
// parent's rootfs is a published image imported as it was: the kernel's
// squashfs driver only ever reads what imsbuild's mksquashfs wrote): the
// caller unpacks instead.
//
// Where the store has a tree cache (see lower.go) the overlay's lower layer
// is the parent's unpacked tree instead, for a parent imported as
// published too (unsquashfs, not the kernel, reads it).
func (o *Image) mountParent(ctx context.Context, env Env, d cache.Digest, packedHere bool) (*parentRoot, error) {
	if o.UnpackParent {
		return nil, nil
	}
	if tc := treesOf(env.Store); tc != nil {
		r, err := o.mountTree(ctx, env, tc, d)
		if errors.Is(err, errNoTree) {
			return nil, nil
		}
		if r != nil || err != nil {
			return r, err
		}
	}
	if !packedHere {
		fmt.Fprintf(env.Log, "%s rootfs %s was imported as published, not packed here: unpacking it instead of mounting it\n", o.Parent, d)
		return nil, nil
	}
	var r *overlay.Root
	mount := func(p string) (err error) {
		r, err = overlay.Mount(p, filepath.Join(env.Work, "overlay"))
		return err
	}
	var err error
	if fu, ok := env.Store.(cache.FileUser); ok {
		// The cache lock that keeps the blob is held only while mounting:
		// the loop device holds the file from then on, even if pruned.
		err = fu.UseFile(ctx, d, mount)
	} else {
		sq := filepath.Join(env.Work, "parent.squashfs")
		if err = env.Store.Materialize(ctx, d, sq, true); err == nil {
			err = mount(sq)
		}
	}
	switch {
	case errors.Is(err, overlay.ErrUnavailable):
		fmt.Fprintf(env.Log, "cannot mount %s rootfs %s (%v): unpacking it instead\n", o.Parent, d, err)
		return nil, nil
	case errors.Is(err, cache.ErrCorrupt):
		return nil, fmt.Errorf("restore %s: %w (dropped with the results built on it: the next build makes it again)", d, err)
	case err != nil:
		return nil, fmt.Errorf("mount %s: %w", d, err)
	}
	fmt.Fprintf(env.Log, "mounted %s rootfs %s under an overlay, on its squashfs\n", o.Parent, d)
	return &parentRoot{Root: r}, nil
}

// ReleaseMounts unmounts what the customize steps of a process that died
// (kill -9) left mounted under its scratch directory dir (parents mounted
// by mountParent), so that dir can be removed.
func ReleaseMounts(dir string) error { return overlay.UnmountUnder(dir) }
