package actions

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/internal/record"
)

// Kind is the family of a record.
type Kind int

const (
	// Action records are named by their (checked) key.
	Action Kind = iota
	// Step records are named by the step, an arbitrary string the backend
	// maps to a safe name (record.StepFile, or a hash).
	Step
)

func (k Kind) String() string {
	if k == Action {
		return "action"
	}
	return "step"
}

// Backend stores the records of an action cache and answers for the blobs
// they refer to. It does not encode or decode records.
type Backend interface {
	// Get returns the record name of kind. An absent record is an error
	// wrapping cache.ErrNotFound; one larger than record.MaxSize (or
	// otherwise unreadable as a record) wraps record.ErrUndecodable.
	Get(ctx context.Context, kind Kind, name string) ([]byte, error)
	// Put stores data as the record name of kind, whole: a reader sees the
	// old record or the new one. For an Action record, res is the result it
	// holds: Put fails with an error wrapping cache.ErrNotFound unless all
	// of res's blobs (record.Refs) are stored, checked so that no cleanup
	// of the backend can remove them before the record appears, and a
	// backend that links records to blobs (OCI layers) links them. res is
	// nil for Step records.
	Put(ctx context.Context, kind Kind, name string, data []byte, res *cache.ActionResult) error
	// Check reports the first of refs that is not stored (wrapping
	// cache.ErrNotFound) or that it found corrupt (wrapping cache.ErrCorrupt).
	// Get calls it for every hit.
	Check(ctx context.Context, refs []cache.Digest) error
}

// Owner is a Backend that owns its action records (cache/local). Get drops
// a record that does not decode, so it is not read again before a build
// replaces it, and marks each hit as used, for pruning. Remote backends
// are shared with other imsbuild versions and runners: they leave records
// they cannot read alone and track no use.
type Owner interface {
	Drop(ctx context.Context, key string) error
	Used(ctx context.Context, key string)
}

// Cache is a cache.ActionCache over a Backend.
type Cache struct {
	b     Backend
	keyed bool
}

var _ cache.ActionCache = (*Cache)(nil)

// Option configures a Cache.
type Option func(*Cache)

// WithKeyInRecord writes the whole key into every action record and
// misses on a record without it, for a backend whose record names hold only
// a prefix of long keys (OCI tags hold at most 128 characters).
func WithKeyInRecord() Option { return func(c *Cache) { c.keyed = true } }

// New returns the action cache stored in b.
func New(b Backend, opts ...Option) *Cache {
	c := &Cache{b: b}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Get returns the result for key. A missing record, one that does not
// decode or names another key, and one whose blobs are not all stored is
// cache.ErrNotFound; a blob the backend found corrupt makes the error wrap
// cache.ErrCorrupt too, so the step is built again.
func (c *Cache) Get(ctx context.Context, key string) (*cache.ActionResult, error) {
	if err := record.CheckKey(key); err != nil {
		return nil, fmt.Errorf("get action: %w", err)
	}
	var rec *record.Action
	data, err := c.b.Get(ctx, Action, key)
	if err == nil {
		rec, err = record.DecodeAction(data, key)
	}
	if err == nil && c.keyed && rec.Key == "" {
		err = fmt.Errorf("%w: no key in the record", record.ErrUndecodable)
	}
	if errors.Is(err, record.ErrUndecodable) {
		if o, ok := c.b.(Owner); ok {
			_ = o.Drop(ctx, key) // best effort: it is a miss either way
		}
		if !errors.Is(err, cache.ErrNotFound) {
			err = fmt.Errorf("%w: %w", err, cache.ErrNotFound)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("get action %s: %w", key, err)
	}
	if err := c.b.Check(ctx, record.Refs(&rec.Result)); err != nil {
		if errors.Is(err, cache.ErrCorrupt) && !errors.Is(err, cache.ErrNotFound) {
			return nil, fmt.Errorf("get action %s: %w: %w", key, err, cache.ErrNotFound)
		}
		return nil, fmt.Errorf("get action %s: %w", key, err)
	}
	if o, ok := c.b.(Owner); ok {
		o.Used(ctx, key)
	}
	return &rec.Result, nil
}

// Put records res and the preimage of key. It fails when a blob of res is
// not stored. A zero res.Created is recorded as the current time.
func (c *Cache) Put(ctx context.Context, key string, preimage []byte, res *cache.ActionResult) error {
	if err := record.CheckKey(key); err != nil {
		return fmt.Errorf("put action: %w", err)
	}
	if res == nil {
		return fmt.Errorf("put action %s: nil result", key)
	}
	rec := record.NewAction(res, preimage)
	if c.keyed {
		rec.Key = key
	}
	data, err := record.Marshal(rec)
	if err != nil {
		return fmt.Errorf("put action %s: %w", key, err)
	}
	if err := c.b.Put(ctx, Action, key, data, &rec.Result); err != nil {
		return fmt.Errorf("put action %s: %w", key, err)
	}
	return nil
}

// LastKey returns the key and preimage last recorded for step, or
// cache.ErrNotFound (also for a record that does not decode).
func (c *Cache) LastKey(ctx context.Context, step string) (string, []byte, error) {
	if step == "" {
		return "", nil, errors.New("last key: step name is empty")
	}
	data, err := c.b.Get(ctx, Step, step)
	var key string
	var preimage []byte
	if err == nil {
		key, preimage, err = record.DecodeStep(data, step)
	}
	if errors.Is(err, record.ErrUndecodable) && !errors.Is(err, cache.ErrNotFound) {
		err = fmt.Errorf("%w: %w", err, cache.ErrNotFound)
	}
	if err != nil {
		return "", nil, fmt.Errorf("last key of %s: %w", step, err)
	}
	return key, preimage, nil
}

// SetLastKey records key and its preimage as the newest seen for step. An
// unchanged record is not written again, so a no-op build writes (and
// fsyncs) nothing.
func (c *Cache) SetLastKey(ctx context.Context, step, key string, preimage []byte) error {
	if step == "" {
		return errors.New("set last key: step name is empty")
	}
	if err := record.CheckKey(key); err != nil {
		return fmt.Errorf("set last key of %s: %w", step, err)
	}
	data, err := record.Marshal(record.NewStep(step, key, preimage))
	if err != nil {
		return fmt.Errorf("set last key of %s: %w", step, err)
	}
	if old, err := c.b.Get(ctx, Step, step); err == nil && bytes.Equal(old, data) {
		return nil
	}
	if err := c.b.Put(ctx, Step, step, data, nil); err != nil {
		return fmt.Errorf("set last key of %s: %w", step, err)
	}
	return nil
}
