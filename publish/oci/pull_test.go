package oci_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/publish"
	"github.com/imsbuild/imsbuild/publish/oci"
)

// pushTestImage publishes an image of arts to host/repo:latest.
func pushTestImage(t *testing.T, host, repo string, arts map[string][]byte) publish.Image {
	t.Helper()
	store := newStore(t)
	img := testImage(t, store, arts)
	p, err := oci.New(oci.Config{Repository: host + "/" + repo})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(t.Context(), store, []publish.Image{img}); err != nil {
		t.Fatal(err)
	}
	return img
}

func TestPullRoundTrip(t *testing.T) {
	host := newRegistry(t)
	arts := map[string][]byte{
		"rootfs":          bytes.Repeat([]byte("squash"), 100_000),
		"kernel":          []byte("kernel"),
		"boot_parameters": {},
	}
	img := pushTestImage(t, host, "hpc/img", arts)
	dst := filepath.Join(t.TempDir(), "new", "dir")
	got, err := oci.Pull(t.Context(), host+"/hpc/img:latest", dst, false)
	if err != nil {
		t.Fatalf("Pull() = %v", err)
	}
	want := map[string]oci.PulledArtifact{}
	for n := range arts {
		o := img.Outputs[n]
		want[n] = oci.PulledArtifact{Name: n, Path: filepath.Join(dst, n), Digest: o.Digest, Size: o.Size, MediaType: ims.MediaTypeOf(n)}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Pull() (-want +got):\n%s", diff)
	}
	for n, data := range arts {
		b, err := os.ReadFile(filepath.Join(dst, n))
		if err != nil || !bytes.Equal(b, data) {
			t.Errorf("%s: %d bytes, %v; want the %d pushed bytes", n, len(b), err, len(data))
		}
	}
	entries, _ := os.ReadDir(dst)
	if len(entries) != len(arts) {
		t.Errorf("dst holds %d entries, want %d (no temp files)", len(entries), len(arts))
	}
}

// corrupter flips the first byte of every blob it downloads.
type corrupter struct{ rt http.RoundTripper }

func (c corrupter) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(req)
	if err != nil || req.Method != http.MethodGet || !strings.Contains(req.URL.Path, "/blobs/sha256:") || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if len(b) > 0 {
		b[0] ^= 0xff
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, nil
}

// putRaw pushes blobs and a hand-made manifest to ref.
func putRaw(t *testing.T, ref string, m ocispec.Manifest, blobs ...[]byte) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blobs {
		if err := remote.WriteLayer(r.Context(), static.NewLayer(b, types.OCILayer), remote.WithContext(t.Context())); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(r, rawManifest(raw), remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
}

type rawManifest []byte

func (r rawManifest) RawManifest() ([]byte, error) { return r, nil }
func (r rawManifest) MediaType() (types.MediaType, error) {
	return types.OCIManifestSchema1, nil
}

func TestPullErrors(t *testing.T) {
	host := newRegistry(t)
	pushTestImage(t, host, "good", map[string][]byte{"rootfs": []byte("rootfs"), "kernel": []byte("kernel")})

	plain, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := name.ParseReference(host + "/plain:latest")
	if err := remote.Write(r, plain, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}

	blob := []byte("payload")
	h, _, _ := v1.SHA256(bytes.NewReader(blob))
	evil := func(title string) ocispec.Manifest {
		m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: oci.ArtifactType,
			Config: ocispec.DescriptorEmptyJSON,
			Layers: []ocispec.Descriptor{{MediaType: "application/octet-stream", Digest: ocispec.DescriptorEmptyJSON.Digest,
				Size: 0, Annotations: map[string]string{ocispec.AnnotationTitle: title}}}}
		m.SchemaVersion = 2
		m.Config.Data = nil
		m.Layers[0].Digest = digest.Digest(h.String())
		m.Layers[0].Size = int64(len(blob))
		return m
	}
	putRaw(t, host+"/evil:escape", evil("../escape"), blob, []byte("{}"))
	putRaw(t, host+"/evil:untitled", evil(""), blob, []byte("{}"))
	dup := evil("kernel")
	dup.Layers = append(dup.Layers, dup.Layers[0])
	putRaw(t, host+"/evil:dup", dup, blob, []byte("{}"))
	other := evil("kernel")
	other.ArtifactType = "application/vnd.example.other"
	putRaw(t, host+"/evil:other", other, blob, []byte("{}"))

	tests := []struct {
		name    string
		ref     string
		opts    []oci.Option
		wantIs  error
		wantSub string
	}{
		{"corrupt download", host + "/good:latest", []oci.Option{oci.WithTransport(corrupter{http.DefaultTransport})}, publish.ErrCorrupt, "layer rootfs"},
		{"not an imsbuild image", host + "/plain:latest", nil, nil, "not an imsbuild image"},
		{"other artifact type", host + "/evil:other", nil, nil, "not an imsbuild image"},
		{"title escapes dst", host + "/evil:escape", nil, nil, `title "../escape" is not a plain file name`},
		{"no title", host + "/evil:untitled", nil, nil, `title "" is not a plain file name`},
		{"duplicate title", host + "/evil:dup", nil, nil, `duplicate title "kernel"`},
		{"missing tag", host + "/good:nope", nil, nil, "pull " + host + "/good:nope"},
		{"bad reference", "Bad Ref", nil, nil, "pull Bad Ref"},
		{"unreachable", closedHost(t) + "/x:latest", nil, nil, "connection refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			dst := filepath.Join(parent, "dst")
			_, err := oci.Pull(t.Context(), tc.ref, dst, false, tc.opts...)
			if err == nil {
				t.Fatal("Pull() = nil, want error")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("Pull() = %v, want errors.Is %v", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), tc.wantSub) {
				t.Errorf("Pull() = %q, want it to contain %q", err, tc.wantSub)
			}
			// Nothing unverified is left behind, inside dst or next to it.
			var files []string
			filepath.WalkDir(parent, func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					files = append(files, p)
				}
				return nil
			})
			if len(files) != 0 {
				t.Errorf("Pull() left files %v", files)
			}
		})
	}
}
