package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/internal/record"
)

const manifestMediaType = ocispec.MediaTypeImageManifest

// Actions is the action cache of a Cache.
type Actions struct{ c *Cache }

// Actions returns the action cache of c's repository. It returns the
// interface so that *Cache satisfies tiered.Remote.
func (c *Cache) Actions() cache.ActionCache { return &Actions{c: c} }

// Get returns the result for key from the manifest tagged key-<key>. A
// missing or undecodable manifest or config, or a result whose blobs are not
// all in the repository, is cache.ErrNotFound.
func (a *Actions) Get(ctx context.Context, key string) (*cache.ActionResult, error) {
	if err := record.CheckKey(key); err != nil {
		return nil, fmt.Errorf("get action: %w", err)
	}
	data, err := a.c.getRecord(ctx, keyTag(key), ActionArtifactType, ActionConfigMediaType)
	if err != nil {
		return nil, fmt.Errorf("get action %s from %s: %w", key, a.c.repo, err)
	}
	rec, err := decodeAction(data, key)
	if err != nil {
		return nil, fmt.Errorf("get action %s from %s: %w: %w", key, a.c.repo, err, cache.ErrNotFound)
	}
	if _, err := a.c.StatAll(ctx, record.Refs(&rec.Result)); err != nil {
		return nil, fmt.Errorf("get action %s from %s: %w", key, a.c.repo, err)
	}
	return &rec.Result, nil
}

// Put records res for key as a manifest tagged key-<key> whose layers are
// the result's blobs, after checking (in parallel) that they all exist.
func (a *Actions) Put(ctx context.Context, key string, preimage []byte, res *cache.ActionResult) error {
	if err := record.CheckKey(key); err != nil {
		return fmt.Errorf("put action: %w", err)
	}
	if res == nil {
		return fmt.Errorf("put action %s: nil result", key)
	}
	rec := actionRecord{Key: key, Action: record.NewAction(res, preimage)}
	data, err := record.Marshal(rec)
	if err != nil {
		return fmt.Errorf("put action %s: %w", key, err)
	}
	sizes, err := a.c.StatAll(ctx, record.Refs(&rec.Result))
	if err != nil {
		return fmt.Errorf("put action %s to %s: %w", key, a.c.repo, err)
	}
	if err := a.c.putRecord(ctx, keyTag(key), ActionArtifactType, ActionConfigMediaType, data, layers(&rec.Result, sizes)); err != nil {
		return fmt.Errorf("put action %s to %s: %w", key, a.c.repo, err)
	}
	return nil
}

// layers returns the descriptors of res's blobs: outputs sorted by name,
// then the log. Sizes are the registry's.
func layers(res *cache.ActionResult, sizes map[cache.Digest]int64) []ocispec.Descriptor {
	names := make([]string, 0, len(res.Outputs))
	for n := range res.Outputs {
		names = append(names, n)
	}
	slices.Sort(names)
	ls := make([]ocispec.Descriptor, 0, len(names)+1)
	for _, n := range names {
		o := res.Outputs[n]
		mt := o.MediaType
		if mt == "" {
			mt = DefaultLayerMediaType
		}
		ls = append(ls, ocispec.Descriptor{
			MediaType:   mt,
			Digest:      digest.Digest(o.Digest),
			Size:        sizes[o.Digest],
			Annotations: map[string]string{ocispec.AnnotationTitle: n},
		})
	}
	if res.Log != "" {
		ls = append(ls, ocispec.Descriptor{
			MediaType:   "text/plain",
			Digest:      digest.Digest(res.Log),
			Size:        sizes[res.Log],
			Annotations: map[string]string{ocispec.AnnotationTitle: LogTitle, AnnotationRole: "log"},
		})
	}
	return ls
}

// Lock takes key's lock within this process (see the package doc).
func (a *Actions) Lock(ctx context.Context, key string) (func(), error) {
	if err := record.CheckKey(key); err != nil {
		return nil, fmt.Errorf("lock action: %w", err)
	}
	return a.c.locks.Lock(ctx, key)
}

// LastKey returns the key and preimage last recorded for step, or
// cache.ErrNotFound.
func (a *Actions) LastKey(ctx context.Context, step string) (string, []byte, error) {
	tag, err := stepTag(step)
	if err != nil {
		return "", nil, err
	}
	data, err := a.c.getRecord(ctx, tag, StepArtifactType, StepConfigMediaType)
	if err != nil {
		return "", nil, fmt.Errorf("last key of %s: %w", step, err)
	}
	key, preimage, err := record.DecodeStep(data, step)
	if err != nil {
		return "", nil, fmt.Errorf("last key of %s: %w: %w", step, err, cache.ErrNotFound)
	}
	return key, preimage, nil
}

// SetLastKey records key and its preimage as the newest seen for step.
func (a *Actions) SetLastKey(ctx context.Context, step, key string, preimage []byte) error {
	tag, err := stepTag(step)
	if err != nil {
		return err
	}
	if err := record.CheckKey(key); err != nil {
		return fmt.Errorf("set last key of %s: %w", step, err)
	}
	data, err := record.Marshal(record.NewStep(step, key, preimage))
	if err != nil {
		return fmt.Errorf("set last key of %s: %w", step, err)
	}
	if err := a.c.putRecord(ctx, tag, StepArtifactType, StepConfigMediaType, data, nil); err != nil {
		return fmt.Errorf("set last key of %s in %s: %w", step, a.c.repo, err)
	}
	return nil
}

// putRecord uploads data as the config blob of a manifest with the given
// layers and tags it; the manifest goes last.
func (c *Cache) putRecord(ctx context.Context, tag, artifactType, configType string, data []byte, ls []ocispec.Descriptor) error {
	d := cache.Digest(digest.FromBytes(data))
	if _, err := c.PutVerified(ctx, bytes.NewReader(data), d, int64(len(data))); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if ls == nil {
		ls = []ocispec.Descriptor{}
	}
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    manifestMediaType,
		ArtifactType: artifactType,
		Config:       ocispec.Descriptor{MediaType: configType, Digest: digest.Digest(d), Size: int64(len(data))},
		Layers:       ls,
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := c.putManifest(ctx, tag, raw); err != nil {
		return fmt.Errorf("tag %s: %w", tag, err)
	}
	return nil
}

// getRecord returns the config blob of the manifest tagged tag, checking the
// manifest's types and the config's digest. Anything unexpected wraps
// cache.ErrNotFound.
func (c *Cache) getRecord(ctx context.Context, tag, artifactType, configType string) ([]byte, error) {
	raw, _, err := c.getManifest(ctx, tag)
	if err != nil {
		return nil, fmt.Errorf("tag %s: %w", tag, err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("tag %s: %w: %v: %w", tag, record.ErrUndecodable, err, cache.ErrNotFound)
	}
	d := cache.Digest(m.Config.Digest)
	if m.ArtifactType != artifactType || m.Config.MediaType != configType || !d.Valid() || m.Config.Size > maxManifestSize {
		return nil, fmt.Errorf("tag %s: %w: not an %s manifest: %w", tag, record.ErrUndecodable, artifactType, cache.ErrNotFound)
	}
	rc, err := c.Open(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("tag %s: config: %w", tag, err)
	}
	defer rc.Close()
	data, err := readLimited(rc)
	if err != nil {
		if errors.Is(err, cache.ErrCorrupt) || errors.Is(err, record.ErrUndecodable) {
			return nil, fmt.Errorf("tag %s: config: %w: %w", tag, err, cache.ErrNotFound)
		}
		return nil, fmt.Errorf("tag %s: config: %w", tag, err)
	}
	return data, nil
}
