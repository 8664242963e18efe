package local

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/imsbuild/imsbuild/cache"
)

// Actions is the action cache of a Cache.
type Actions struct{ c *Cache }

// Actions returns the action cache stored beside c's blobs.
func (c *Cache) Actions() *Actions { return &Actions{c: c} }

// actionRecord is the file actions/<key>.json.
type actionRecord struct {
	Result cache.ActionResult `json:"result"`
	preimage
}

// stepRecord is the file steps/<step>-<hash>.json.
type stepRecord struct {
	Step string `json:"step"`
	Key  string `json:"key"`
	preimage
}

// preimage keeps the canonical JSON a key hashes, byte for byte: inline when
// it is compact JSON (what keys are made of), else base64.
type preimage struct {
	Preimage      json.RawMessage `json:"preimage,omitempty"`
	PreimageBytes []byte          `json:"preimageBytes,omitempty"`
}

func newPreimage(b []byte) preimage {
	var buf bytes.Buffer
	if len(b) > 0 && json.Compact(&buf, b) == nil && bytes.Equal(buf.Bytes(), b) {
		return preimage{Preimage: slices.Clone(b)}
	}
	return preimage{PreimageBytes: slices.Clone(b)}
}

func (p preimage) bytes() []byte {
	if p.Preimage != nil {
		return p.Preimage
	}
	return p.PreimageBytes
}

// marshal encodes v without HTML escaping, so preimages stay byte-exact.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// checkKey rejects keys that are not plain file names.
func checkKey(key string) error {
	if key == "" || len(key) > 200 || key[0] == '.' {
		return fmt.Errorf("invalid action key %q", key)
	}
	for _, r := range key {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("invalid action key %q", key)
		}
	}
	return nil
}

func (a *Actions) path(key string) string {
	return filepath.Join(a.c.actionsDir(), key+".json")
}

// Get returns the result for key, or ErrNotFound when there is none, when it
// cannot be decoded (the file is removed) or when one of its blobs is
// missing. A hit marks the action as recently used for Prune.
func (a *Actions) Get(ctx context.Context, key string) (*cache.ActionResult, error) {
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("get action: %w", err)
	}
	p := a.path(key)
	rec, err := readAction(p)
	if errors.Is(err, errUndecodable) {
		_ = os.Remove(p)
		return nil, fmt.Errorf("get action %s: %w: %w", key, err, cache.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get action %s: %w", key, err)
	}
	if err := a.c.checkBlobs(ctx, &rec.Result); err != nil {
		return nil, fmt.Errorf("get action %s: %w", key, err)
	}
	now := time.Now()
	_ = os.Chtimes(p, now, now) // last used, for Prune; best effort
	return &rec.Result, nil
}

// Put records res and the preimage of key atomically. It fails when an
// output or log blob of res is not in the store.
func (a *Actions) Put(ctx context.Context, key string, preimage []byte, res *cache.ActionResult) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("put action: %w", err)
	}
	if res == nil {
		return fmt.Errorf("put action %s: nil result", key)
	}
	rec := actionRecord{Result: *res, preimage: newPreimage(preimage)}
	if rec.Result.Created.IsZero() {
		rec.Result.Created = time.Now().UTC()
	}
	data, err := marshal(rec)
	if err != nil {
		return fmt.Errorf("put action %s: %w", key, err)
	}
	unlock, err := a.c.gcShared(ctx)
	if err != nil {
		return fmt.Errorf("put action %s: %w", key, err)
	}
	defer unlock()
	if err := a.c.checkBlobs(ctx, &rec.Result); err != nil {
		return fmt.Errorf("put action %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put action %s: %w", key, err)
	}
	if err := a.c.writeFile(a.path(key), data); err != nil {
		return fmt.Errorf("put action %s: %w", key, err)
	}
	return nil
}

// Lock takes the exclusive lock of key, shared with other processes, waiting
// until it is free or ctx is done.
func (a *Actions) Lock(ctx context.Context, key string) (func(), error) {
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("lock action: %w", err)
	}
	return lockFile(ctx, filepath.Join(a.c.locksDir(), key+".lock"), false)
}

// LastKey returns the key and preimage last recorded for step, or ErrNotFound.
func (a *Actions) LastKey(ctx context.Context, step string) (string, []byte, error) {
	p, err := a.stepPath(step)
	if err != nil {
		return "", nil, err
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil, fmt.Errorf("last key of %s: %w", step, cache.ErrNotFound)
	}
	if err != nil {
		return "", nil, fmt.Errorf("last key of %s: %w", step, err)
	}
	var rec stepRecord
	if err := json.Unmarshal(data, &rec); err != nil || rec.Step != step || rec.Key == "" {
		return "", nil, fmt.Errorf("last key of %s: %w: %w", step, errUndecodable, cache.ErrNotFound)
	}
	return rec.Key, rec.bytes(), nil
}

// SetLastKey records key and its preimage as the newest seen for step.
func (a *Actions) SetLastKey(ctx context.Context, step, key string, preimage []byte) error {
	p, err := a.stepPath(step)
	if err != nil {
		return err
	}
	if err := checkKey(key); err != nil {
		return fmt.Errorf("set last key of %s: %w", step, err)
	}
	data, err := marshal(stepRecord{Step: step, Key: key, preimage: newPreimage(preimage)})
	if err != nil {
		return fmt.Errorf("set last key of %s: %w", step, err)
	}
	if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, data) {
		return nil // unchanged: a no-op build writes (and fsyncs) nothing
	}
	if err := a.c.writeFile(p, data); err != nil {
		return fmt.Errorf("set last key of %s: %w", step, err)
	}
	return nil
}

// stepPath names the file of step: a readable prefix plus a hash of the
// whole name, so distinct steps never share a file.
func (a *Actions) stepPath(step string) (string, error) {
	if step == "" {
		return "", errors.New("step name is empty")
	}
	safe := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, step)
	if len(safe) > 80 {
		safe = safe[:80]
	}
	sum := sha256.Sum256([]byte(step))
	return filepath.Join(a.c.stepsDir(), safe+"-"+hex.EncodeToString(sum[:6])+".json"), nil
}

// errUndecodable marks an action or step file that cannot be decoded.
var errUndecodable = errors.New("undecodable cache record")

// readAction reads and decodes an action file; missing is ErrNotFound.
func readAction(p string) (*actionRecord, error) {
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, cache.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	var rec actionRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("%w: %v", errUndecodable, err)
	}
	for name, o := range rec.Result.Outputs {
		if !o.Digest.Valid() {
			return nil, fmt.Errorf("%w: output %s: invalid digest %q", errUndecodable, name, o.Digest)
		}
	}
	if rec.Result.Log != "" && !rec.Result.Log.Valid() {
		return nil, fmt.Errorf("%w: invalid log digest %q", errUndecodable, rec.Result.Log)
	}
	return &rec, nil
}

// refs returns the blobs res refers to, sorted, without duplicates.
func refs(res *cache.ActionResult) []cache.Digest {
	ds := make([]cache.Digest, 0, len(res.Outputs)+1)
	for _, o := range res.Outputs {
		ds = append(ds, o.Digest)
	}
	if res.Log != "" {
		ds = append(ds, res.Log)
	}
	slices.Sort(ds)
	return slices.Compact(ds)
}

// checkBlobs reports the first blob of res that is not in the store.
func (c *Cache) checkBlobs(ctx context.Context, res *cache.ActionResult) error {
	for _, d := range refs(res) {
		if _, err := c.Stat(ctx, d); err != nil {
			return err
		}
	}
	return nil
}
