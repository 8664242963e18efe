package treehash

import (
	"bytes"
	"encoding/gob"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/imsbuild/imsbuild/internal/atomicfile"
	"github.com/imsbuild/imsbuild/internal/stamp"
)

// statCacheVersion is bumped when the file format or the meaning of an
// entry changes; a file with another version is ignored.
const statCacheVersion = 1

// StatCache remembers file digests by (path, size, mtime, ctime, inode).
// It is safe for concurrent use within one process; two processes saving
// the same file is safe too (the last rename wins, each file is complete).
// A nil *StatCache is valid and caches nothing.
type StatCache struct {
	path string

	mu      sync.Mutex
	entries map[string]statEntry
	touched map[string]bool // paths looked up or recorded since Open
	dirty   bool

	now    func() time.Time // the clock; tests move it
	hashed atomic.Int64     // files whose content was read; tests count it
}

// statEntry is one remembered file. Times are Unix nanoseconds.
type statEntry struct {
	Size     int64
	Mtime    int64
	Ctime    int64
	Ino      uint64
	Dev      uint64
	Sum      [32]byte
	Recorded int64 // when the stat was taken, before the content was read
}

type statFile struct {
	Version int
	Entries map[string]statEntry
}

// OpenStatCache loads the stat cache stored at path (missing is empty). A
// file that cannot be decoded is treated as empty: it is only a cache.
func OpenStatCache(path string) (*StatCache, error) {
	c := &StatCache{path: path, entries: map[string]statEntry{}, touched: map[string]bool{}, now: time.Now}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open stat cache %w", err)
	}
	defer f.Close()
	var sf statFile
	if err := gob.NewDecoder(f).Decode(&sf); err != nil || sf.Version != statCacheVersion {
		c.dirty = true // rewrite it on Save
		return c, nil
	}
	if sf.Entries != nil {
		c.entries = sf.Entries
	}
	return c, nil
}

// Save writes the cache back atomically when it changed since it was
// opened or last saved. Writing, it drops the entries of files that no
// longer exist, unless they were looked up or recorded since Open: the
// others may belong to other builds, so only a vanished file's entry goes.
// An unchanged cache is neither checked nor written.
func (c *StatCache) Save() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	if !c.dirty || c.path == "" {
		c.mu.Unlock()
		return nil
	}
	var idle []string
	for p := range c.entries {
		if !c.touched[p] {
			idle = append(idle, p)
		}
	}
	c.mu.Unlock()
	gone := vanished(idle) // without the lock: hashing goes on meanwhile

	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range gone {
		if !c.touched[p] {
			delete(c.entries, p)
		}
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(statFile{Version: statCacheVersion, Entries: c.entries}); err != nil {
		return fmt.Errorf("save stat cache %s: %w", c.path, err)
	}
	if err := atomicfile.WriteFile(c.path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("save stat cache: %w", err)
	}
	c.dirty = false
	return nil
}

// vanished returns the paths that no longer exist. A path that cannot be
// checked (permission denied, say) is not known to be gone.
func vanished(paths []string) []string {
	var gone []string
	for _, p := range paths {
		_, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			gone = append(gone, p)
		}
	}
	return gone
}

// Len returns the number of remembered files.
func (c *StatCache) Len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

func (c *StatCache) clock() time.Time {
	if c == nil || c.now == nil {
		return time.Now()
	}
	return c.now()
}

func (c *StatCache) countHash() {
	if c != nil {
		c.hashed.Add(1)
	}
}

// lookup returns the remembered sum of the file at absolute path p when its
// stat still matches and the entry is not racy.
func (c *StatCache) lookup(p string, fi fs.FileInfo) ([32]byte, bool) {
	if c == nil {
		return [32]byte{}, false
	}
	want, ok := stamp.Of(fi)
	if !ok {
		return [32]byte{}, false
	}
	c.mu.Lock()
	e, ok := c.entries[p]
	if ok {
		c.touched[p] = true
	}
	c.mu.Unlock()
	if !ok || e.stamp() != want || !want.Settled(e.Recorded) {
		return [32]byte{}, false
	}
	return e.Sum, true
}

// record remembers sum for the file at p as stat'ed in fi, no later than
// recorded.
func (c *StatCache) record(p string, fi fs.FileInfo, sum [32]byte, recorded time.Time) {
	if c == nil {
		return
	}
	st, ok := stamp.Of(fi)
	if !ok {
		return
	}
	e := entryOf(st)
	e.Sum = sum
	e.Recorded = recorded.UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.touched[p] = true
	if old, ok := c.entries[p]; ok && old == e {
		return
	}
	c.entries[p] = e
	c.dirty = true
}

func entryOf(st stamp.Stamp) statEntry {
	return statEntry{Size: st.Size, Mtime: st.Mtime, Ctime: st.Ctime, Ino: st.Ino, Dev: st.Dev}
}

// stamp returns the file state e was recorded for.
func (e statEntry) stamp() stamp.Stamp {
	return stamp.Stamp{Dev: e.Dev, Ino: e.Ino, Size: e.Size, Mtime: e.Mtime, Ctime: e.Ctime}
}

// RecordWritten remembers digest ("sha256:…") as the content of the file at
// path, which the caller has just written itself (a copy it verified). File
// trusts the entry at once, although the file changed within the racy
// window: the caller knows the bytes, and only a write by someone else in
// the very timestamp tick of its own last change could hide. It saves the
// next build from reading a file it just wrote.
func (c *StatCache) RecordWritten(path, digest string) error {
	if c == nil {
		return nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("record %s: %w", path, err)
	}
	hexSum, ok := strings.CutPrefix(digest, "sha256:")
	raw, err := hex.DecodeString(hexSum)
	if !ok || err != nil || len(raw) != 32 {
		return fmt.Errorf("record %s: invalid digest %q", path, digest)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return fmt.Errorf("record %w", err)
	}
	var sum [32]byte
	copy(sum[:], raw)
	st, ok := stamp.Of(fi)
	if !ok {
		return nil
	}
	c.record(abs, fi, sum, time.Unix(0, st.SettledAt()))
	return nil
}
