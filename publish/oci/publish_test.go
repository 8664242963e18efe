package oci_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/publish"
	"github.com/imsbuild/imsbuild/publish/oci"
)

func fetchManifest(t *testing.T, ref string) (*ocispec.Manifest, *remote.Descriptor) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(r, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	return &m, desc
}

func TestPublishManifest(t *testing.T) {
	host := newRegistry(t)
	store := newStore(t)
	img := testImage(t, store, map[string][]byte{
		"rootfs": []byte("squashfs bytes"),
		"kernel": []byte("kernel bytes"),
		"initrd": []byte("initrd bytes"),
		"log":    []byte("not an artifact"),
	})
	p, err := oci.New(oci.Config{Repository: host + "/hpc/compute", Source: "https://git.example/images", Revision: "0123abc"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.PushImage(t.Context(), store, img)
	if err != nil {
		t.Fatalf("PushImage() = %v", err)
	}
	m, desc := fetchManifest(t, host+"/hpc/compute:latest")
	if want := host + "/hpc/compute@" + desc.Digest.String(); got != want {
		t.Errorf("PushImage() = %s, want %s", got, want)
	}
	if desc.MediaType != ocispec.MediaTypeImageManifest {
		t.Errorf("media type = %s, want %s", desc.MediaType, ocispec.MediaTypeImageManifest)
	}

	imsm, err := ims.ParseManifest([]byte(m.Annotations[oci.AnnotationIMSManifest]))
	if err != nil {
		t.Fatalf("IMS manifest annotation: %v", err)
	}
	wantIMS := &ims.Manifest{Version: "1.0", Created: "2024-05-01 12:30:00"}
	layer := func(n string) ocispec.Descriptor {
		o := img.Outputs[n]
		return ocispec.Descriptor{MediaType: ims.MediaTypeOf(n), Digest: digest.Digest(o.Digest), Size: o.Size,
			Annotations: map[string]string{ocispec.AnnotationTitle: n}}
	}
	for _, n := range []string{"rootfs", "kernel", "initrd"} {
		o := img.Outputs[n]
		wantIMS.Artifacts = append(wantIMS.Artifacts, ims.Artifact{
			Link: ims.Link{Path: "s3://boot-images/" + img.ID + "/" + n, Etag: o.MD5, Type: "s3"},
			Type: ims.MediaTypeOf(n), MD5: o.MD5,
		})
	}
	if diff := cmp.Diff(wantIMS, imsm); diff != "" {
		t.Errorf("IMS manifest annotation (-want +got):\n%s", diff)
	}
	delete(m.Annotations, oci.AnnotationIMSManifest)

	want := &ocispec.Manifest{
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: "application/vnd.imsbuild.image.v1",
		Config: ocispec.Descriptor{MediaType: "application/vnd.oci.empty.v1+json",
			Digest: "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", Size: 2},
		Layers: []ocispec.Descriptor{layer("rootfs"), layer("kernel"), layer("initrd")},
		Annotations: map[string]string{
			"org.opencontainers.image.created":  "2024-05-01T12:30:00Z",
			"org.opencontainers.image.source":   "https://git.example/images",
			"org.opencontainers.image.revision": "0123abc",
			"io.imsbuild.name":                  "compute-bookworm",
			"io.imsbuild.arch":                  "x86_64",
			"io.imsbuild.key":                   img.Key,
			"io.imsbuild.id":                    img.ID,
		},
	}
	want.SchemaVersion = 2
	if diff := cmp.Diff(want, m); diff != "" {
		t.Errorf("manifest (-want +got):\n%s", diff)
	}

	// The config blob is the empty JSON object.
	repo, _ := name.NewRepository(host + "/hpc/compute")
	cl, err := remote.Layer(repo.Digest(m.Config.Digest.String()), remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := cl.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if b, err := io.ReadAll(rc); err != nil || string(b) != "{}" {
		t.Errorf("config blob = %q, %v; want {}", b, err)
	}
}

func TestPublishOmitsIMSManifestWithoutMD5(t *testing.T) {
	host := newRegistry(t)
	store := newStore(t)
	img := testImage(t, store, map[string][]byte{"rootfs": []byte("r")})
	img.ID, img.Created = "", time.Time{}
	o := img.Outputs["rootfs"]
	o.MD5, o.MediaType = "", ""
	img.Outputs["rootfs"] = o
	p, err := oci.New(oci.Config{Repository: host + "/x"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(t.Context(), store, []publish.Image{img}); err != nil {
		t.Fatal(err)
	}
	m, _ := fetchManifest(t, host+"/x:latest")
	for _, k := range []string{oci.AnnotationIMSManifest, ocispec.AnnotationCreated, ocispec.AnnotationSource} {
		if v, ok := m.Annotations[k]; ok {
			t.Errorf("annotation %s = %q, want none", k, v)
		}
	}
	if want := ims.ImageID(img.Name, string(o.Digest)); m.Annotations[oci.AnnotationID] != want {
		t.Errorf("id annotation = %q, want derived %q", m.Annotations[oci.AnnotationID], want)
	}
	if got := m.Layers[0].MediaType; got != ims.MediaTypeRootfs {
		t.Errorf("layer media type = %q, want %q (from the artifact name)", got, ims.MediaTypeRootfs)
	}
}

func TestPublishTags(t *testing.T) {
	tests := []struct {
		name     string
		tags     []string
		wantTags []string
	}{
		{"default", nil, []string{"latest"}},
		{"several", []string{"bookworm", "v1.2", "bookworm"}, []string{"bookworm", "v1.2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			host := newRegistry(t)
			store := newStore(t)
			img := testImage(t, store, map[string][]byte{"rootfs": []byte("rootfs " + tc.name)})
			p, err := oci.New(oci.Config{Repository: host + "/hpc/img", Tags: tc.tags})
			if err != nil {
				t.Fatal(err)
			}
			ref, err := p.PushImage(t.Context(), store, img)
			if err != nil {
				t.Fatal(err)
			}
			repo, _ := name.NewRepository(host + "/hpc/img")
			got, err := remote.List(repo, remote.WithContext(t.Context()))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantTags, got); diff != "" {
				t.Errorf("tags (-want +got):\n%s", diff)
			}
			for _, tag := range tc.wantTags {
				_, desc := fetchManifest(t, host+"/hpc/img:"+tag)
				if !strings.HasSuffix(ref, "@"+desc.Digest.String()) {
					t.Errorf("tag %s = %s, want %s", tag, desc.Digest, ref)
				}
			}
		})
	}
}

func TestPublishSkipsExistingBlobs(t *testing.T) {
	host := newRegistry(t)
	store := newStore(t)
	img := testImage(t, store, map[string][]byte{"rootfs": []byte("rootfs"), "kernel": []byte("kernel")})
	c := newCounter()
	push := func(cfg oci.Config) {
		t.Helper()
		p, err := oci.New(cfg, oci.WithTransport(c))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Publish(t.Context(), store, []publish.Image{img}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := oci.Config{Repository: host + "/hpc/img", Tags: []string{"a", "b"}}
	tests := []struct {
		name                       string
		revision                   string
		wantUploads, wantManifests int
	}{
		// The manifest by digest, then one PUT per tag (tags come last).
		{"first push uploads rootfs, kernel and config", "", 3, 3},
		{"same image again moves nothing", "", 0, 0},
		{"new manifest, same blobs", "abc", 0, 3},
	}
	for _, tc := range tests {
		c.reset()
		cfg.Revision = tc.revision
		push(cfg)
		if got := c.get("POST upload"); got != tc.wantUploads {
			t.Errorf("%s: %d blob uploads, want %d", tc.name, got, tc.wantUploads)
		}
		if got := c.get("PUT manifest"); got != tc.wantManifests {
			t.Errorf("%s: %d manifest PUTs, want %d", tc.name, got, tc.wantManifests)
		}
	}
}

func TestPublishErrors(t *testing.T) {
	host := newRegistry(t)
	store := newStore(t)
	good := testImage(t, store, map[string][]byte{"rootfs": []byte("rootfs"), "kernel": []byte("kernel")})
	with := func(f func(img *publish.Image)) []publish.Image {
		img := good
		img.Outputs = map[string]publish.Artifact{}
		for k, v := range good.Outputs {
			img.Outputs[k] = v
		}
		f(&img)
		return []publish.Image{img}
	}
	tests := []struct {
		name    string
		repo    string
		images  []publish.Image
		wantIs  error
		wantSub []string
	}{
		{
			name: "blob not in the blobs",
			images: with(func(img *publish.Image) {
				img.Outputs["kernel"] = publish.Artifact{Digest: digest.Digest("sha256:" + strings.Repeat("0", 64)), Size: 3}
			}),
			wantIs:  publish.ErrNotFound,
			wantSub: []string{"push " + host + "/errs:latest", "image compute", "kernel"},
		},
		{
			name: "size differs from the blob's",
			images: with(func(img *publish.Image) {
				o := img.Outputs["rootfs"]
				o.Size++
				img.Outputs["rootfs"] = o
			}),
			wantIs:  publish.ErrCorrupt,
			wantSub: []string{"rootfs", "size 6"},
		},
		{
			name:    "no rootfs",
			images:  with(func(img *publish.Image) { delete(img.Outputs, "rootfs") }),
			wantSub: []string{"no rootfs"},
		},
		{
			name:    "invalid digest",
			images:  with(func(img *publish.Image) { img.Outputs["initrd"] = publish.Artifact{Digest: "md5:abc"} }),
			wantSub: []string{"initrd", "invalid digest"},
		},
		{
			name:    "two images share tags",
			images:  append(with(func(*publish.Image) {}), good),
			wantSub: []string{"2 images", "[latest]"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := oci.New(oci.Config{Repository: host + "/errs"})
			if err != nil {
				t.Fatal(err)
			}
			err = p.Publish(t.Context(), store, tc.images)
			if err == nil {
				t.Fatal("Publish() = nil, want error")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("Publish() = %v, want errors.Is %v", err, tc.wantIs)
			}
			for _, s := range tc.wantSub {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Publish() = %q, want it to contain %q", err, s)
				}
			}
			// Nothing was pushed.
			r, _ := name.ParseReference(host + "/errs:latest")
			_, herr := remote.Head(r, remote.WithContext(t.Context()))
			var terr *transport.Error
			if !errors.As(herr, &terr) || terr.StatusCode != http.StatusNotFound {
				t.Errorf("HEAD %s = %v, want 404", r, herr)
			}
		})
	}
}

// A corrupt local blob file is sent as it is; the registry rejects its
// digest, and reading it again through Blobs.Open tells why.
func TestPublishCorruptBlob(t *testing.T) {
	host := newRegistry(t)
	store := newStore(t)
	img := testImage(t, store, map[string][]byte{"rootfs": []byte("original rootfs")})
	store.Corrupt(t, img.Outputs["rootfs"].Digest)
	p, err := oci.New(oci.Config{Repository: host + "/corrupt"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(t.Context(), store, []publish.Image{img}); !errors.Is(err, publish.ErrCorrupt) {
		t.Fatalf("Publish() of a corrupt blob = %v, want errors.Is ErrCorrupt", err)
	}
	if store.Opens(img.Outputs["rootfs"].Digest) == 0 {
		t.Error("the corrupt blob was not read through Blobs.Open to tell the registry's rejection")
	}
	r, _ := name.ParseReference(host + "/corrupt:latest")
	if _, err := remote.Head(r, remote.WithContext(t.Context())); err == nil {
		t.Error("manifest was pushed although a layer was corrupt")
	}
}

func TestPublishUnreachableRegistry(t *testing.T) {
	host := closedHost(t)
	store := newStore(t)
	img := testImage(t, store, map[string][]byte{"rootfs": []byte("r")})
	p, err := oci.New(oci.Config{Repository: host + "/hpc/img", Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = p.Publish(t.Context(), store, []publish.Image{img})
	if err == nil {
		t.Fatal("Publish() to a closed port = nil, want error")
	}
	if want := "push " + host + "/hpc/img@sha256:"; !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Publish() = %q, want prefix %q and connection refused", err, want)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("Publish() took %s to fail", d)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name    string
		cfg     oci.Config
		opts    []oci.Option
		wantSub string
	}{
		{"no repository", oci.Config{}, nil, "no repository"},
		{"uppercase repository", oci.Config{Repository: "reg.example/Hpc"}, nil, "reg.example/Hpc"},
		{"tag in repository", oci.Config{Repository: "reg.example/hpc:v1"}, nil, "reg.example/hpc:v1"},
		{"bad tag", oci.Config{Repository: "reg.example/hpc", Tags: []string{"a b"}}, nil, `invalid tag "a b"`},
		{"tag with colon", oci.Config{Repository: "reg.example/hpc", Tags: []string{"x:y"}}, nil, `invalid tag "x:y"`},
		{"nil keychain", oci.Config{Repository: "reg.example/hpc"}, []oci.Option{oci.WithKeychain(nil)}, "nil keychain"},
		{"nil transport", oci.Config{Repository: "reg.example/hpc"}, []oci.Option{oci.WithTransport(nil)}, "nil transport"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := oci.New(tc.cfg, tc.opts...)
			if err == nil || !strings.Contains(err.Error(), tc.wantSub) {
				t.Errorf("New() = %v, want error containing %q", err, tc.wantSub)
			}
		})
	}
}
