package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/cachetest"
	"github.com/imsbuild/imsbuild/cache/internal/record"
	"github.com/imsbuild/imsbuild/internal/registrytest"
)

const testTimeout = 3 * time.Minute

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func startRegistry(t *testing.T) *registrytest.Registry {
	t.Helper()
	if testing.Short() {
		t.Skip("registry tests skipped in -short mode")
	}
	return registrytest.Start(t)
}

var repos atomic.Int64

// openCache opens a cache in a fresh repository of reg.
func openCache(t *testing.T, reg *registrytest.Registry, opts Options) *Cache {
	t.Helper()
	url := fmt.Sprintf("oci://%s/imsbuild/cache%d", reg.Host, repos.Add(1))
	c, err := Open(t.Context(), url, opts)
	if err != nil {
		t.Fatalf("Open(%s) = %v", url, err)
	}
	return c
}

// blobFile is where docker-registry's filesystem driver keeps blob d.
func blobFile(reg *registrytest.Registry, d cache.Digest) string {
	h := d.Hex()
	return filepath.Join(reg.Dir, "docker/registry/v2/blobs/sha256", h[:2], h, "data")
}

// unhealable skips cachetest's corruption test with the reason;
// TestCorruptBlob covers the reads.
type unhealable struct {
	*Cache
	t *testing.T
}

func (u unhealable) BlobPath(cache.Digest) string {
	u.t.Skip("a registry never replaces a blob it has, so re-putting cannot heal a damaged one; TestCorruptBlob checks reads and Materialize")
	return ""
}

func TestConformance(t *testing.T) {
	reg := startRegistry(t)
	cachetest.Run(t, func(t *testing.T) (cache.Store, cache.ActionCache) {
		c := openCache(t, reg, Options{})
		return unhealable{c, t}, c.Actions()
	})
	// A remote cache locks nothing (see cache.Locker) and must not claim to.
	if l, ok := openCache(t, reg, Options{}).Actions().(cache.Locker); ok {
		t.Errorf("Actions() is a cache.Locker (%T), but remote caches hold no lock across runners", l)
	}
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		url, want string
		wantErr   bool
	}{
		{url: "oci://registry.example/hpc/cache", want: "registry.example/hpc/cache"},
		{url: "oci://127.0.0.1:5000/cache/", want: "127.0.0.1:5000/cache"},
		{url: "oci://registry.example", wantErr: true},
		{url: "s3://bucket/prefix", wantErr: true},
		{url: "oci://registry.example/Upper", wantErr: true},
		{url: "oci://registry.example/repo:tag", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			repo, err := ParseURL(tc.url, false)
			if (err != nil) != tc.wantErr || err == nil && repo.Name() != tc.want {
				t.Errorf("ParseURL(%q) = %v, %v; want %q, error %v", tc.url, repo, err, tc.want, tc.wantErr)
			}
		})
	}
	c, err := Open(t.Context(), "oci://127.0.0.1:5000/cache", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Name(), "oci://127.0.0.1:5000/cache"; got != want {
		t.Errorf("Name() = %q, want %q", got, want)
	}
	if got, want := c.base, "http://127.0.0.1:5000/v2/cache"; got != want {
		t.Errorf("base URL = %q, want %q (loopback registries use plain HTTP)", got, want)
	}
}

func putString(t *testing.T, s cache.Store, content string) (cache.Digest, int64) {
	t.Helper()
	d, n, err := s.Put(t.Context(), strings.NewReader(content), "")
	if err != nil {
		t.Fatalf("Put(%q) = %v", content, err)
	}
	return d, n
}

func TestCorruptBlob(t *testing.T) {
	ctx := testContext(t)
	reg := startRegistry(t)
	c := openCache(t, reg, Options{})
	content := "squashfs image"
	d, _ := putString(t, c, content)
	if err := os.WriteFile(blobFile(reg, d), bytes.Repeat([]byte{'X'}, len(content)), 0o644); err != nil {
		t.Fatal(err)
	}
	rc, err := c.Open(ctx, d)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	if !errors.Is(err, cache.ErrCorrupt) {
		t.Errorf("reading a corrupt blob = %v, want ErrCorrupt", err)
	}
	dst := filepath.Join(t.TempDir(), "out")
	if err := c.Materialize(ctx, d, dst, true); !errors.Is(err, cache.ErrCorrupt) {
		t.Errorf("Materialize(corrupt) = %v, want ErrCorrupt", err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(dst)); len(ents) != 0 {
		t.Errorf("Materialize(corrupt) left %d files", len(ents))
	}
}

// TestManifestLayout checks the manifest an action becomes, as a registry
// client sees it.
func TestManifestLayout(t *testing.T) {
	ctx := testContext(t)
	reg := startRegistry(t)
	c := openCache(t, reg, Options{})
	rootfs, rn := putString(t, c, "rootfs bytes")
	kernel, kn := putString(t, c, "kernel")
	logd, ln := putString(t, c, "log")
	key := strings.Repeat("0123456789abcdef", 5) // 80 characters: the tag holds 64
	res := &cache.ActionResult{
		Step: "image.base/pack",
		Outputs: map[string]cache.Output{
			"rootfs": {Digest: rootfs, Size: rn, MediaType: "application/vnd.cray.image.rootfs.squashfs"},
			"kernel": {Digest: kernel, Size: kn},
		},
		Builder: "pack/v1",
		Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Log:     logd,
	}
	pre := []byte(`{"type":"imsbuild/pack/v1"}`)
	if err := c.Actions().Put(ctx, key, pre, res); err != nil {
		t.Fatalf("Put() = %v", err)
	}
	raw, mt, err := c.getManifest(ctx, "key-"+key[:64])
	if err != nil {
		t.Fatalf("get manifest: %v", err)
	}
	if mt != ocispec.MediaTypeImageManifest {
		t.Errorf("manifest media type %q", mt)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if m.ArtifactType != ActionArtifactType || m.Config.MediaType != ActionConfigMediaType {
		t.Errorf("artifactType %q, config %q", m.ArtifactType, m.Config.MediaType)
	}
	type layer struct{ Title, MediaType, Digest string }
	var got []layer
	for _, l := range m.Layers {
		got = append(got, layer{l.Annotations[ocispec.AnnotationTitle], l.MediaType, string(l.Digest)})
	}
	want := []layer{
		{"kernel", DefaultLayerMediaType, string(kernel)},
		{"rootfs", "application/vnd.cray.image.rootfs.squashfs", string(rootfs)},
		{LogTitle, "text/plain", string(logd)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("layers (-want +got):\n%s", diff)
	}
	if m.Layers[2].Size != ln {
		t.Errorf("log layer size %d, want %d", m.Layers[2].Size, ln)
	}
	var rec record.Action
	data := readAll(t, c, cache.Digest(m.Config.Digest))
	if err := json.Unmarshal(data, &rec); err != nil || rec.Key != key || string(rec.Preimage) != string(pre) {
		t.Errorf("config = %s, %v; want key %s and the preimage", data, err, key)
	}
	got2, err := c.Actions().Get(ctx, key)
	if err != nil || !cmp.Equal(res, got2) {
		t.Errorf("Get() = %+v, %v; want %+v", got2, err, res)
	}
	// Another key with the same first 64 characters is a miss, not a wrong hit.
	if _, err := c.Actions().Get(ctx, key[:64]+"ffff"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("Get(key sharing the tag) = %v, want ErrNotFound", err)
	}
}

func readAll(t *testing.T, s cache.Store, d cache.Digest) []byte {
	t.Helper()
	rc, err := s.Open(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGetMisses(t *testing.T) {
	ctx := testContext(t)
	reg := startRegistry(t)
	c := openCache(t, reg, Options{})
	d, n := putString(t, c, "output")
	gone, _ := putString(t, c, "deleted later")
	res := func(ds ...cache.Digest) *cache.ActionResult {
		r := &cache.ActionResult{Step: "s", Outputs: map[string]cache.Output{}, Created: time.Unix(1, 0).UTC()}
		for i, d := range ds {
			r.Outputs[fmt.Sprint("out", i)] = cache.Output{Digest: d, Size: n}
		}
		return r
	}
	keyDeleted, keyOther, keyless := strings.Repeat("d", 64), strings.Repeat("e", 64), strings.Repeat("a", 64)
	if err := c.Actions().Put(ctx, keyDeleted, nil, res(d, gone)); err != nil {
		t.Fatal(err)
	}
	// A local/S3 action record (no key in it) under an action tag: the tag
	// alone does not say which key it was for.
	data, err := record.Marshal(record.NewAction(res(d), nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.putRecord(ctx, keyTag(keyless), ActionArtifactType, ActionConfigMediaType, data, nil); err != nil {
		t.Fatal(err)
	}
	// A manifest of another kind under an action tag.
	if err := c.putRecord(ctx, keyTag(keyOther), StepArtifactType, StepConfigMediaType, []byte(`{}`), nil); err != nil {
		t.Fatal(err)
	}
	deleteBlob(t, c, gone)
	for _, key := range []string{keyDeleted, keyOther, keyless, strings.Repeat("f", 64)} {
		if _, err := c.Actions().Get(ctx, key); !errors.Is(err, cache.ErrNotFound) {
			t.Errorf("Get(%s) = %v, want ErrNotFound", key[:1], err)
		}
	}
}

// deleteBlob deletes d from the registry through the API.
func deleteBlob(t *testing.T, c *Cache, d cache.Digest) {
	t.Helper()
	resp, err := c.do(t.Context(), true, http.MethodDelete, c.blobURL(d), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE blob %s: %s", d, resp.Status)
	}
}

func TestGetChecksBlobsInParallel(t *testing.T) {
	reg := startRegistry(t)
	bt := cachetest.NewHeadBarrier()
	c := openCache(t, reg, Options{Transport: bt})
	cachetest.ParallelGet(t, c, c.Actions(), bt)
}
