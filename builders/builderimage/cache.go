package builderimage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gofrs/flock"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/imsbuild/imsbuild/internal/atomicfile"
	"github.com/imsbuild/imsbuild/internal/untar"
)

// Names inside the cache directory.
const (
	rootfsName   = "rootfs"
	completeName = "complete"
	linksName    = "links" // pinned index digest + platform → manifest digest
	lockSuffix   = ".lock"
	tmpInfix     = ".tmp-"
)

// lockRetry is how often a waiting caller retries the entry's lock.
const lockRetry = 50 * time.Millisecond

// cache is a directory of unpacked images keyed by manifest digest:
// <dir>/<hex>/rootfs, <dir>/<hex>/complete, <dir>/<hex>.lock.
type cache struct{ dir string }

func (c cache) entry(h v1.Hash) string  { return filepath.Join(c.dir, h.Hex) }
func (c cache) rootfs(h v1.Hash) string { return filepath.Join(c.entry(h), rootfsName) }

func (c cache) complete(h v1.Hash) bool {
	_, err := os.Stat(filepath.Join(c.entry(h), completeName))
	return err == nil
}

// lookup finds a complete entry for the pinned digest h: the manifest h
// itself, or the manifest a previous Unpack picked from index h for want.
func (c cache) lookup(h v1.Hash, want v1.Platform) (v1.Hash, bool) {
	if c.complete(h) {
		return h, true
	}
	b, err := os.ReadFile(c.linkPath(h, want))
	if err != nil {
		return v1.Hash{}, false
	}
	target, err := v1.NewHash(strings.TrimSpace(string(b)))
	if err != nil || !c.complete(target) {
		return v1.Hash{}, false
	}
	return target, true
}

func (c cache) linkPath(index v1.Hash, want v1.Platform) string {
	p := strings.NewReplacer("/", "_", ":", "_").Replace(want.String())
	return filepath.Join(c.dir, linksName, index.Hex+"_"+p)
}

// link records that index resolves to manifest for want, so that the next
// Unpack of the pinned index needs no network.
func (c cache) link(index v1.Hash, want v1.Platform, manifest v1.Hash) error {
	p := c.linkPath(index, want)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFile(p, []byte(manifest.String()+"\n"), 0o644)
}

// unpack makes the entry for h complete, extracting img unless another
// caller did, and returns its rootfs path.
func (c cache) unpack(ctx context.Context, h v1.Hash, img v1.Image, log io.Writer) (string, error) {
	if c.complete(h) {
		return c.rootfs(h), nil
	}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return "", err
	}
	lock := flock.New(c.entry(h) + lockSuffix)
	if _, err := lock.TryLockContext(ctx, lockRetry); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Path(), err)
	}
	defer lock.Unlock()
	if c.complete(h) {
		return c.rootfs(h), nil
	}
	// Holding the lock, anything else for h is a dead caller's leftover.
	if err := c.clean(h); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(c.dir, h.Hex+tmpInfix)
	if err != nil {
		return "", err
	}
	committed := false
	defer func() {
		if !committed {
			_ = removeTree(tmp)
		}
	}()
	if err := extract(ctx, img, filepath.Join(tmp, rootfsName), log); err != nil {
		return "", err
	}
	if err := atomicfile.WriteFile(filepath.Join(tmp, completeName), []byte(h.String()+"\n"), 0o644); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, c.entry(h)); err != nil {
		return "", err
	}
	committed = true
	if err := atomicfile.SyncDir(c.dir); err != nil {
		return "", err
	}
	return c.rootfs(h), nil
}

// clean removes an incomplete entry for h and its temporary directories.
func (c cache) clean(h v1.Hash) error {
	stale, err := filepath.Glob(filepath.Join(c.dir, h.Hex+tmpInfix+"*"))
	if err != nil {
		return err
	}
	if _, err := os.Lstat(c.entry(h)); err == nil {
		stale = append(stale, c.entry(h))
	}
	for _, p := range stale {
		if err := removeTree(p); err != nil {
			return fmt.Errorf("remove stale %s: %w", p, err)
		}
	}
	return nil
}

// extract streams the flattened filesystem of img into dst through the safe
// extractor.
func extract(ctx context.Context, img v1.Image, dst string, log io.Writer) error {
	rc := mutate.Extract(img)
	defer rc.Close()
	if err := untar.Extract(ctx, rc, dst, untar.Options{Log: log}); err != nil {
		return err
	}
	// The flattening writer ends the tar stream even when a layer fails (a
	// digest mismatch found at the layer's end, say); its error comes after.
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return fmt.Errorf("flatten layers: %w", err)
	}
	return nil
}

// removeTree removes path like os.RemoveAll, first making directories
// writable so that read-only ones in an image do not stop it.
func removeTree(path string) error {
	if err := os.RemoveAll(path); err == nil {
		return nil
	}
	_ = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	if err := os.RemoveAll(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
