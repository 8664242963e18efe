package treehash

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
)

const (
	header       = "imsbuild-treehash-v1\x00"
	ownersHeader = "imsbuild-treehash-owners-v1\x00"
)

// node is one entry of the walked tree.
type node struct {
	name     string
	mode     fs.FileMode
	payload  string // symlink target or device numbers
	uid, gid uint32
	sum      [32]byte
	children []*node
}

// Dir returns the digest ("sha256:…") of the tree rooted at root. root may be
// a symlink to a directory; symlinks below it are recorded, not followed.
// sc may be nil.
func Dir(ctx context.Context, root string, sc *StatCache) (string, error) {
	return dir(ctx, root, sc, false)
}

// DirOwners is Dir with the numeric owner (uid:gid) of every entry and of
// the root in the digest, for a tree that is copied with its owners (an
// image root imported as root). Its digests never equal Dir's. Owners are
// read from a fresh lstat on every walk, never from the stat cache, so a
// chown is always seen.
func DirOwners(ctx context.Context, root string, sc *StatCache) (string, error) {
	return dir(ctx, root, sc, true)
}

func dir(ctx context.Context, root string, sc *StatCache, owners bool) (string, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", fmt.Errorf("treehash %s: %w", root, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("treehash %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("treehash %s: not a directory", root)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	h := newHasher(ctx, sc)
	top := newNode("", fi)
	werr := h.walk(abs, top)
	if err := h.dirs.Wait(); werr == nil {
		werr = err
	}
	if werr != nil {
		cancel() // stop the workers early
	}
	if err := h.g.Wait(); err != nil {
		return "", err
	}
	if werr != nil {
		return "", werr
	}
	dirSum(top, owners)
	d := sha256.New()
	io.WriteString(d, headerOf(owners))
	io.WriteString(d, "root ")
	io.WriteString(d, permString(top.mode))
	io.WriteString(d, " ")
	if owners {
		io.WriteString(d, ownerString(top))
		io.WriteString(d, " ")
	}
	io.WriteString(d, hex.EncodeToString(top.sum[:]))
	return digest.NewDigest(digest.SHA256, d).String(), nil
}

// File returns the sha256 digest ("sha256:…") of a file's content, following
// symlinks. sc may be nil.
func File(ctx context.Context, path string, sc *StatCache) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("hash %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("hash %s: not a regular file", path)
	}
	h := newHasher(ctx, sc)
	sum, err := h.fileSum(abs, fi)
	if err != nil {
		return "", err
	}
	return digest.NewDigestFromBytes(digest.SHA256, sum[:]).String(), nil
}

// hasher walks one tree; file contents are hashed by g's workers.
type hasher struct {
	ctx  context.Context
	g    *errgroup.Group
	dirs errgroup.Group // subdirectory walks running beside the caller's
	// dirSlots bounds the extra walkers; without a free slot a directory is
	// walked inline, so a walk never waits for a slot (no deadlock).
	dirSlots chan struct{}
	sc       *StatCache
	now      time.Time
	bufs     chan []byte
}

func newHasher(ctx context.Context, sc *StatCache) *hasher {
	g, gctx := errgroup.WithContext(ctx)
	workers := 2 * runtime.GOMAXPROCS(0)
	g.SetLimit(workers)
	h := &hasher{ctx: gctx, g: g, sc: sc, bufs: make(chan []byte, workers), dirSlots: make(chan struct{}, runtime.GOMAXPROCS(0))}
	if sc != nil {
		h.now = sc.clock()
	}
	return h
}

// walk reads dir into n and schedules the hashing of its regular files.
func (h *hasher) walk(dir string, n *node) error {
	if err := h.ctx.Err(); err != nil {
		return err
	}
	ents, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return fmt.Errorf("treehash %w", err)
	}
	n.children = make([]*node, 0, len(ents))
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		fi, err := e.Info()
		if err != nil {
			return fmt.Errorf("treehash %s: %w", p, err)
		}
		c := newNode(e.Name(), fi)
		n.children = append(n.children, c)
		switch t := fi.Mode().Type(); {
		case t == fs.ModeDir:
			select {
			case h.dirSlots <- struct{}{}:
				h.dirs.Go(func() error {
					defer func() { <-h.dirSlots }()
					return h.walk(p, c)
				})
			default:
				if err := h.walk(p, c); err != nil {
					return err
				}
			}
		case t == fs.ModeSymlink:
			if c.payload, err = os.Readlink(p); err != nil {
				return fmt.Errorf("treehash %w", err)
			}
		case t&fs.ModeDevice != 0:
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				c.payload = strconv.FormatUint(uint64(st.Rdev), 10)
			}
		case t == 0:
			if sum, ok := h.sc.lookup(p, fi); ok {
				c.sum = sum
				continue
			}
			h.g.Go(func() error {
				sum, err := h.hashAndRecord(p, fi)
				c.sum = sum
				return err
			})
		}
	}
	return nil
}

// fileSum returns the content sum of p, from the stat cache when it can.
func (h *hasher) fileSum(p string, fi fs.FileInfo) ([32]byte, error) {
	if sum, ok := h.sc.lookup(p, fi); ok {
		return sum, nil
	}
	return h.hashAndRecord(p, fi)
}

func (h *hasher) hashAndRecord(p string, fi fs.FileInfo) ([32]byte, error) {
	sum, err := h.hashFile(p)
	if err != nil {
		return sum, err
	}
	h.sc.record(p, fi, sum, h.now)
	return sum, nil
}

func (h *hasher) hashFile(p string) ([32]byte, error) {
	var sum [32]byte
	f, err := os.Open(p)
	if err != nil {
		return sum, fmt.Errorf("hash %w", err)
	}
	defer f.Close()
	var buf []byte
	select {
	case buf = <-h.bufs:
	default:
		buf = make([]byte, 128<<10)
	}
	defer func() {
		select {
		case h.bufs <- buf:
		default:
		}
	}()
	d := sha256.New()
	for {
		if err := h.ctx.Err(); err != nil {
			return sum, err
		}
		n, err := f.Read(buf)
		d.Write(buf[:n])
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return sum, fmt.Errorf("hash %s: %w", p, err)
		}
	}
	h.sc.countHash()
	copy(sum[:], d.Sum(nil))
	return sum, nil
}

// newNode returns the node of an entry named name whose lstat is fi.
func newNode(name string, fi fs.FileInfo) *node {
	n := &node{name: name, mode: fi.Mode()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		n.uid, n.gid = st.Uid, st.Gid
	}
	return n
}

// dirSum computes the Merkle sums of n and every directory below it; with
// owners, each record has the entry's "uid:gid" after its permission bits.
func dirSum(n *node, owners bool) {
	d := sha256.New()
	io.WriteString(d, headerOf(owners))
	for _, c := range n.children {
		var payload string
		switch t := c.mode.Type(); {
		case t == fs.ModeDir:
			dirSum(c, owners)
			payload = hex.EncodeToString(c.sum[:])
		case t == 0:
			payload = hex.EncodeToString(c.sum[:])
		default:
			payload = c.payload
		}
		io.WriteString(d, typeChar(c.mode))
		io.WriteString(d, " ")
		io.WriteString(d, permString(c.mode))
		io.WriteString(d, " ")
		if owners {
			io.WriteString(d, ownerString(c))
			io.WriteString(d, " ")
		}
		io.WriteString(d, payload)
		io.WriteString(d, "\x00")
		io.WriteString(d, c.name)
		io.WriteString(d, "\x00")
	}
	copy(n.sum[:], d.Sum(nil))
}

func headerOf(owners bool) string {
	if owners {
		return ownersHeader
	}
	return header
}

func ownerString(n *node) string {
	return strconv.FormatUint(uint64(n.uid), 10) + ":" + strconv.FormatUint(uint64(n.gid), 10)
}

func typeChar(m fs.FileMode) string {
	switch t := m.Type(); {
	case t == fs.ModeDir:
		return "d"
	case t == fs.ModeSymlink:
		return "l"
	case t&fs.ModeCharDevice != 0:
		return "c"
	case t&fs.ModeDevice != 0:
		return "b"
	case t == fs.ModeNamedPipe:
		return "p"
	case t == fs.ModeSocket:
		return "s"
	case t == 0:
		return "f"
	default:
		return "?"
	}
}

// permString returns the Unix permission bits of m (with setuid 04000,
// setgid 02000 and sticky 01000) as four octal digits.
func permString(m fs.FileMode) string {
	p := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		p |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		p |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		p |= 0o1000
	}
	return fmt.Sprintf("%04o", p)
}
