package steps

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/imsbuild/imsbuild/builders/overlay"
	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/local"
	"github.com/imsbuild/imsbuild/internal/caps"
)

// The lower layer of a customize's overlay is, in the order tried:
//
//  1. the parent's unpacked tree from the local cache's tree cache
//     (local.Cache.UseTree), unpacked into it by the first child that
//     needs it: mksquashfs reads a tree in the page cache some three
//     times faster than the same files through a squashfs mount;
//  2. the parent's squashfs mounted read-only, where the store has no
//     tree cache (mountParent);
//  3. none: the parent unpacked into the step's scratch directory, where
//     the host cannot mount (not root, no overlayfs) or UnpackParent.
//
// The step log says which.

// trees is the tree cache of a store.
type trees interface {
	UseTree(ctx context.Context, d cache.Digest, fill func(root string) error) (root string, release func(), filled bool, err error)
	KeepTree(ctx context.Context, d cache.Digest, src string) (bool, error)
}

// treesOf returns the tree cache of store: a local cache's, also under a
// tiered cache; nil for any other store.
func treesOf(store cache.Store) trees {
	if l := localOf(store); l != nil {
		return l
	}
	return nil
}

// localOf returns the local cache store is or writes to (a tiered cache
// puts every blob into its local cache), nil for any other store.
func localOf(store cache.Store) *local.Cache {
	switch s := store.(type) {
	case *local.Cache:
		return s
	case interface{ Local() *local.Cache }:
		return s.Local()
	}
	return nil
}

// parentRoot is the overlay a customize runs on, and the release of the
// tree below it (nil for a squashfs mount).
type parentRoot struct {
	*overlay.Root
	release func()

	once     sync.Once
	closed   chan struct{} // closed once closeErr is set
	closeErr error
}

// CloseLater starts Close in the background, for a root that is packed:
// the unmount (tens of milliseconds, the kernel dropping the overlay's
// inodes) then runs while the artifacts are hashed and stored. Close
// waits for it.
func (p *parentRoot) CloseLater() {
	p.once.Do(func() {
		p.closed = make(chan struct{})
		go func() {
			defer close(p.closed)
			p.closeErr = p.Root.Close()
			if p.release != nil {
				p.release()
			}
		}()
	})
}

// Close unmounts the overlay, then lets the tree go (Prune may remove it
// from then on).
func (p *parentRoot) Close() error {
	p.CloseLater()
	<-p.closed
	return p.closeErr
}

// errNoTree says the tree cache could not give the overlay a lower layer
// for a reason that rules out the squashfs mount too; the caller unpacks.
var errNoTree = errors.New("no tree")

// mountTree mounts an overlay on the unpacked tree of the parent's rootfs
// d, unpacking it into the tree cache first when it has none. It returns
// nil, nil when it cannot use the tree cache (not root: only root's
// unsquashfs keeps owners, and a tree is shared by every later child),
// and errNoTree, having logged why, when the host cannot mount the
// overlay.
func (o *Image) mountTree(ctx context.Context, env Env, tc trees, d cache.Digest) (*parentRoot, error) {
	if !caps.CanMount() {
		// Not root, or root in an unprivileged container: no overlay
		// to put on the tree, so do not unpack one.
		return nil, nil
	}
	start := time.Now()
	tree, release, filled, err := tc.UseTree(ctx, d, func(root string) error {
		fmt.Fprintf(env.Log, "unpacking %s rootfs %s into the tree cache\n", o.Parent, d)
		return unpack(ctx, env.Store, d, env.Work, root)
	})
	if err != nil {
		return nil, err // unpack's errors say restore and the digest
	}
	r, err := overlay.MountDir(tree, filepath.Join(env.Work, "overlay"))
	if err != nil {
		release()
		if errors.Is(err, overlay.ErrUnavailable) {
			fmt.Fprintf(env.Log, "cannot mount %s rootfs %s (%v): unpacking it instead\n", o.Parent, d, err)
			return nil, errNoTree
		}
		return nil, fmt.Errorf("mount %s: %w", d, err)
	}
	how := "cached"
	if filled {
		how = fmt.Sprintf("unpacked in %v", time.Since(start).Round(time.Millisecond))
	}
	fmt.Fprintf(env.Log, "mounted %s rootfs %s under an overlay, on its tree in the cache (%s)\n", o.Parent, d, how)
	return &parentRoot{Root: r, release: release}, nil
}
