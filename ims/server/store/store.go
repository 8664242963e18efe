package store

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/gofrs/flock"

	"github.com/imsbuild/imsbuild/internal/atomicfile"
)

// IMS's data file names (ims: app.py load_datastore).
const (
	FileRecipes           = "v2.2_recipes.json"
	FileDeletedRecipes    = "v3.2_deleted_recipes.json"
	FileImages            = "v2.1_images.json"
	FileDeletedImages     = "v3.1_deleted_images.json"
	FilePublicKeys        = "v2_public_keys.json"
	FileDeletedPublicKeys = "v3_deleted_public_keys.json"
	FileJobs              = "v2.4_jobs.json"
	FileRemoteBuildNodes  = "v2.0_remote_build_nodes.json"
)

// LockFile is the file in the data directory that one server holds locked.
const LockFile = ".imsbuild-serve.lock"

// ErrLocked means another process serves the data directory.
var ErrLocked = errors.New("data directory is in use by another imsbuild serve")

// Record is what a collection holds: a JSON record with a key.
type Record interface {
	Key() string
}

// Store is the set of IMS collections of one data directory.
type Store struct {
	dir  string
	lock *flock.Flock

	Recipes           *Collection[Recipe]
	DeletedRecipes    *Collection[Recipe]
	Images            *Collection[Image]
	DeletedImages     *Collection[Image]
	PublicKeys        *Collection[PublicKey]
	DeletedPublicKeys *Collection[PublicKey]
	Jobs              *Collection[Job]
	RemoteBuildNodes  *Collection[RemoteBuildNode]
}

// Open locks dir (creating it) and loads every data file in it. Close
// releases the lock.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	lk := flock.New(filepath.Join(dir, LockFile))
	ok, err := lk.TryLock()
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", lk.Path(), err)
	}
	if !ok {
		return nil, fmt.Errorf("lock %s: %w", lk.Path(), ErrLocked)
	}
	s := &Store{dir: dir, lock: lk}
	var errs []error
	load := func(err error) { errs = append(errs, err) }
	s.Recipes, err = open[Recipe](dir, FileRecipes)
	load(err)
	s.DeletedRecipes, err = open[Recipe](dir, FileDeletedRecipes)
	load(err)
	s.Images, err = open[Image](dir, FileImages)
	load(err)
	s.DeletedImages, err = open[Image](dir, FileDeletedImages)
	load(err)
	s.PublicKeys, err = open[PublicKey](dir, FilePublicKeys)
	load(err)
	s.DeletedPublicKeys, err = open[PublicKey](dir, FileDeletedPublicKeys)
	load(err)
	s.Jobs, err = open[Job](dir, FileJobs)
	load(err)
	s.RemoteBuildNodes, err = open[RemoteBuildNode](dir, FileRemoteBuildNodes)
	load(err)
	if err := errors.Join(errs...); err != nil {
		_ = lk.Unlock()
		return nil, err
	}
	// A soft delete writes the deleted record before it removes the live
	// one, and an undelete the other way round, so a crash in between
	// leaves a record in both. The live one wins: the move was never
	// acknowledged.
	healDuplicates(s.Recipes, s.DeletedRecipes)
	healDuplicates(s.Images, s.DeletedImages)
	healDuplicates(s.PublicKeys, s.DeletedPublicKeys)
	return s, nil
}

func healDuplicates[T Record](live, deleted *Collection[T]) {
	deleted.mu.Lock()
	defer deleted.mu.Unlock()
	live.mu.RLock()
	defer live.mu.RUnlock()
	for id := range deleted.recs {
		if _, ok := live.recs[id]; ok {
			deleted.removeLocked(id)
		}
	}
}

// Dir returns the data directory.
func (s *Store) Dir() string { return s.dir }

// Close releases the directory lock.
func (s *Store) Close() error {
	return s.lock.Unlock()
}

// Collection is one IMS data file: records in insertion order, each kept
// with its JSON encoding so that a write or a list only joins bytes.
type Collection[T Record] struct {
	path string

	mu      sync.RWMutex
	recs    map[string]*entry[T]
	order   []*entry[T] // insertion order, with holes (nil) after removals
	holes   int
	version uint64 // bumped by every change
	list    []byte // the encoded collection at listVer
	listVer uint64

	encMu   sync.Mutex // one encoder of the list at a time
	gz      []byte     // the list gzip-compressed, at gzVer
	gzVer   uint64
	gzMu    sync.Mutex // one compressor at a time
	flushMu sync.Mutex // one writer at a time; later waiters ride along
	flushed uint64     // the version on disk
}

type entry[T Record] struct {
	key string
	rec T
	raw []byte
	pos int // index in order
}

func open[T Record](dir, name string) (*Collection[T], error) {
	c := &Collection[T]{path: filepath.Join(dir, name), recs: map[string]*entry[T]{}}
	data, err := os.ReadFile(c.path)
	if errors.Is(err, os.ErrNotExist) {
		c.list = []byte("[]\n")
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", c.path, err)
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(data, &raws); err != nil {
		return nil, fmt.Errorf("load %s: not a JSON array of records: %w", c.path, err)
	}
	for i, raw := range raws {
		var rec T
		// Not strict: IMS drops unknown fields on load too.
		if err := json.Unmarshal(raw, &rec); err != nil {
			return nil, fmt.Errorf("load %s: record %d: %w", c.path, i, err)
		}
		if rec.Key() == "" {
			return nil, fmt.Errorf("load %s: record %d has no id", c.path, i)
		}
		if err := c.putLocked(rec); err != nil {
			return nil, fmt.Errorf("load %s: record %d: %w", c.path, i, err)
		}
	}
	c.flushed = c.version
	return c, nil
}

// Get returns the record stored under key.
func (c *Collection[T]) Get(key string) (T, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.recs[key]
	if !ok {
		var zero T
		return zero, false
	}
	return e.rec, true
}

// Len returns the number of records.
func (c *Collection[T]) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.recs)
}

// All returns the records in insertion order.
func (c *Collection[T]) All() []T {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]T, 0, len(c.recs))
	for _, e := range c.order {
		if e != nil {
			out = append(out, e.rec)
		}
	}
	return out
}

// Each calls fn for each record in insertion order until fn returns
// false, under the read lock: fn must not change the collection.
func (c *Collection[T]) Each(fn func(T) bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, e := range c.order {
		if e != nil && !fn(e.rec) {
			return
		}
	}
}

// JSON returns the collection as IMS lists it: a JSON array of the records
// in insertion order. The bytes are shared: do not change them.
func (c *Collection[T]) JSON() []byte {
	c.mu.RLock()
	if c.listVer == c.version && c.list != nil {
		b := c.list
		c.mu.RUnlock()
		return b
	}
	c.mu.RUnlock()
	b, _ := c.encode()
	return b
}

// Gzip returns JSON gzip-compressed, for clients that accept it: a
// 10,000-image list is 2.5 MB of JSON and about a tenth of that
// compressed, so the server writes and the client reads a tenth. It is
// compressed once per version; callers that queued behind a compressor
// take its result when it shows the collection as it was when they
// asked, or later. The bytes are shared: do not change them.
func (c *Collection[T]) Gzip() []byte {
	c.mu.RLock()
	asked := c.version
	if c.gz != nil && c.gzVer == asked {
		b := c.gz
		c.mu.RUnlock()
		return b
	}
	c.mu.RUnlock()
	c.gzMu.Lock()
	defer c.gzMu.Unlock()
	c.mu.RLock()
	if c.gz != nil && c.gzVer >= asked {
		b := c.gz
		c.mu.RUnlock()
		return b
	}
	c.mu.RUnlock()
	data, v := c.encode()
	var buf bytes.Buffer
	buf.Grow(len(data)/8 + 64)
	// BestSpeed: records repeat their keys, so it compresses about as
	// well as the default level at a fraction of the time, and a list
	// after a write waits for it.
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	_, _ = zw.Write(data)
	_ = zw.Close()
	b := buf.Bytes()
	c.mu.Lock()
	if c.gz == nil || v > c.gzVer {
		c.gz, c.gzVer = b, v
	}
	c.mu.Unlock()
	return b
}

// encode returns the collection's JSON and the version it shows. It holds
// the read lock only to take the records' encodings, and builds the array
// after, so that a 10,000-record list does not stall readers and writers;
// one encoder runs at a time and the others take its result.
func (c *Collection[T]) encode() ([]byte, uint64) {
	c.encMu.Lock()
	defer c.encMu.Unlock()
	c.mu.RLock()
	if c.listVer == c.version && c.list != nil {
		b, v := c.list, c.listVer
		c.mu.RUnlock()
		return b, v
	}
	v := c.version
	raws := make([][]byte, 0, len(c.recs))
	n := 4
	for _, e := range c.order {
		if e != nil {
			raws = append(raws, e.raw)
			n += len(e.raw) + 2
		}
	}
	c.mu.RUnlock()

	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, r := range raws {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '\n')
		b = append(b, r...)
	}
	if len(raws) > 0 {
		b = append(b, '\n')
	}
	b = append(b, ']', '\n')

	c.mu.Lock()
	if c.version == v {
		c.list, c.listVer = b, v
	}
	c.mu.Unlock()
	return b, v
}

func (c *Collection[T]) compactLocked() {
	order := make([]*entry[T], 0, len(c.recs))
	for _, e := range c.order {
		if e != nil {
			e.pos = len(order)
			order = append(order, e)
		}
	}
	c.order, c.holes = order, 0
}

func (c *Collection[T]) putLocked(rec T) error {
	raw, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode record %s: %w", rec.Key(), err)
	}
	k := rec.Key()
	if e, ok := c.recs[k]; ok {
		e.rec, e.raw = rec, raw
	} else {
		e := &entry[T]{key: k, rec: rec, raw: raw, pos: len(c.order)}
		c.recs[k] = e
		c.order = append(c.order, e)
	}
	c.version++
	return nil
}

func (c *Collection[T]) removeLocked(key string) bool {
	e, ok := c.recs[key]
	if !ok {
		return false
	}
	c.order[e.pos] = nil
	c.holes++
	delete(c.recs, key)
	c.version++
	if c.holes > 64 && c.holes > len(c.order)/2 {
		c.compactLocked()
	}
	return true
}

// Tx is a change of one collection, made under its lock.
type Tx[T Record] struct{ c *Collection[T] }

// Get returns the record stored under key.
func (tx Tx[T]) Get(key string) (T, bool) {
	e, ok := tx.c.recs[key]
	if !ok {
		var zero T
		return zero, false
	}
	return e.rec, true
}

// Each calls fn for each record in insertion order until fn returns false.
func (tx Tx[T]) Each(fn func(T) bool) {
	for _, e := range tx.c.order {
		if e != nil && !fn(e.rec) {
			return
		}
	}
}

// Put inserts or replaces rec.
func (tx Tx[T]) Put(rec T) error { return tx.c.putLocked(rec) }

// Remove removes the record stored under key and reports whether there was one.
func (tx Tx[T]) Remove(key string) bool { return tx.c.removeLocked(key) }

// Update runs fn under the collection's lock and, when fn changed
// something and returned nil, writes the collection before returning.
// fn must not block: check S3 and the like before.
func (c *Collection[T]) Update(fn func(Tx[T]) error) error {
	c.mu.Lock()
	before := c.version
	err := fn(Tx[T]{c})
	after := c.version
	c.mu.Unlock()
	if after == before {
		return err
	}
	// A failed fn may have changed records before it failed; they are
	// written too, so memory and disk agree.
	if werr := c.sync(after); werr != nil {
		return werr
	}
	return err
}

// Put inserts or replaces rec and writes the collection.
func (c *Collection[T]) Put(rec T) error {
	return c.Update(func(tx Tx[T]) error { return tx.Put(rec) })
}

// Remove removes the records stored under keys and writes the collection.
func (c *Collection[T]) Remove(keys ...string) error {
	return c.Update(func(tx Tx[T]) error {
		for _, k := range keys {
			tx.Remove(k)
		}
		return nil
	})
}

// sync makes sure version v (or a later one) is on disk. The first caller
// writes; callers that queued behind it find their change already written
// by a later write and return at once.
func (c *Collection[T]) sync(v uint64) error {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	if c.flushed >= v {
		return nil
	}
	data, cur := c.encode()
	if err := atomicfile.WriteFile(c.path, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(c.path), err)
	}
	c.flushed = cur
	return nil
}
