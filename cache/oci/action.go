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
	"github.com/imsbuild/imsbuild/cache/internal/actions"
	"github.com/imsbuild/imsbuild/cache/internal/record"
)

const manifestMediaType = ocispec.MediaTypeImageManifest

// Actions returns the action cache of c's repository
// (cache/internal/actions over the manifests tagged key-<key> and
// step-<hash>; see the package doc). It returns the interface so that
// *Cache satisfies tiered.Remote; it has no Lock (see cache.Locker).
func (c *Cache) Actions() cache.ActionCache {
	return actions.New(records{c}, actions.WithKeyInRecord()) // tags hold only 64 characters of a key
}

// records is the actions.Backend of a Cache: one tagged manifest per
// record, whose config blob is the record.
type records struct{ c *Cache }

// types returns the tag and the artifact and config media types of a record.
func (r records) types(kind actions.Kind, name string) (tag, artifactType, configType string, err error) {
	if kind == actions.Action {
		return keyTag(name), ActionArtifactType, ActionConfigMediaType, nil
	}
	tag, err = stepTag(name)
	return tag, StepArtifactType, StepConfigMediaType, err
}

func (r records) Get(ctx context.Context, kind actions.Kind, name string) ([]byte, error) {
	tag, at, ct, err := r.types(kind, name)
	if err != nil {
		return nil, err
	}
	data, err := r.c.getRecord(ctx, tag, at, ct)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.c.repo, err)
	}
	return data, nil
}

// Put uploads the record as the config of a manifest whose layers are the
// blobs of res, after checking (in parallel) that they all exist.
func (r records) Put(ctx context.Context, kind actions.Kind, name string, data []byte, res *cache.ActionResult) error {
	tag, at, ct, err := r.types(kind, name)
	if err != nil {
		return err
	}
	var ls []ocispec.Descriptor
	if res != nil {
		sizes, err := r.c.StatAll(ctx, record.Refs(res))
		if err != nil {
			return fmt.Errorf("%s: %w", r.c.repo, err)
		}
		ls = layers(res, sizes)
	}
	if err := r.c.putRecord(ctx, tag, at, ct, data, ls); err != nil {
		return fmt.Errorf("%s: %w", r.c.repo, err)
	}
	return nil
}

// Check HEADs every blob, in parallel.
func (r records) Check(ctx context.Context, refs []cache.Digest) error {
	if _, err := r.c.StatAll(ctx, refs); err != nil {
		return fmt.Errorf("%s: %w", r.c.repo, err)
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
