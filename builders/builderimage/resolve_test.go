package builderimage_test

import (
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imsbuild/imsbuild/builders/builderimage"
)

// multiArch returns an index of two images, amd64 and arm64, whose
// /etc/added says which one it is.
func multiArch(t *testing.T) (idx v1.ImageIndex, amd64, arm64 v1.Hash) {
	t.Helper()
	add := func(arch string) (v1.Image, mutate.IndexAddendum) {
		img := appendLayers(t, upperLayer(t, arch+"\n"))
		img, err := mutate.ConfigFile(img, configFile(t, img, arch))
		if err != nil {
			t.Fatal(err)
		}
		return img, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}}
	}
	a, aa := add("amd64")
	b, ba := add("arm64")
	// An attestation-like entry that must never be picked.
	c, ca := add("amd64")
	ca.Platform = &v1.Platform{OS: "unknown", Architecture: "unknown"}
	_ = c
	idx = mutate.AppendManifests(empty.Index, ba, ca, aa)
	return idx, digestOf(t, a), digestOf(t, b)
}

func TestResolveIndex(t *testing.T) {
	idx, amd64, arm64 := multiArch(t)
	idxDigest := digestOf(t, idx)

	host := newRegistry(t)
	if err := writeIndex(t, host+"/builders/multi:v1", idx); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v1"})); err != nil {
		t.Fatal(err)
	}

	refs := map[string]string{
		"registry tag":    host + "/builders/multi:v1",
		"registry digest": host + "/builders/multi@" + idxDigest.String(),
		"layout tag":      builderimage.LayoutScheme + dir + ":v1",
		"layout untagged": dir,
		"layout digest":   builderimage.LayoutScheme + dir + "@" + idxDigest.String(),
		"layout :digest":  dir + ":" + idxDigest.String(),
	}
	platforms := []struct {
		platform string
		want     v1.Hash
		wantErr  string
	}{
		{platform: "", want: amd64},
		{platform: "linux/amd64", want: amd64},
		{platform: "linux/arm64", want: arm64},
		{platform: "linux/s390x", wantErr: "no manifest for platform linux/s390x (have linux/arm64, unknown/unknown, linux/amd64)"},
		{platform: "linux", wantErr: "want os/arch"},
	}
	for name, ref := range refs {
		for _, pc := range platforms {
			t.Run(name+"/"+pc.platform, func(t *testing.T) {
				got, err := builderimage.Resolve(t.Context(), ref, builderimage.Options{Platform: pc.platform})
				if pc.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), pc.wantErr) {
						t.Fatalf("Resolve() = %q, %v; want error containing %q", got, err, pc.wantErr)
					}
					return
				}
				if err != nil || got != pc.want.String() {
					t.Fatalf("Resolve() = %q, %v; want %s", got, err, pc.want)
				}
			})
		}
	}
}

// TestUnpackPinnedIndex: a reference pinned to an index digest is served
// from the cache without network once its platform's image is unpacked.
func TestUnpackPinnedIndex(t *testing.T) {
	idx, _, arm64 := multiArch(t)
	host := newRegistry(t)
	if err := writeIndex(t, host+"/builders/multi:v1", idx); err != nil {
		t.Fatal(err)
	}
	ref := host + "/builders/multi@" + digestOf(t, idx).String()
	cacheDir := t.TempDir()
	opts := builderimage.Options{Platform: "linux/arm64"}
	rootfs, digest, err := builderimage.Unpack(t.Context(), ref, cacheDir, opts)
	if err != nil || digest != arm64.String() {
		t.Fatalf("Unpack() = %s, %s, %v; want digest %s", rootfs, digest, err, arm64)
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "etc/added")); err != nil || string(b) != "arm64\n" {
		t.Errorf("etc/added = %q, %v; want the arm64 image's", b, err)
	}
	cnt := newCounter()
	opts.Transport = cnt
	rootfs2, digest2, err := builderimage.Unpack(t.Context(), ref, cacheDir, opts)
	if err != nil || rootfs2 != rootfs || digest2 != digest {
		t.Errorf("second Unpack() = %s, %s, %v; want %s, %s", rootfs2, digest2, err, rootfs, digest)
	}
	if r := cnt.requests(""); len(r) != 0 {
		t.Errorf("cached Unpack of a pinned index made requests %v, want none", r)
	}
	// Another platform of the same pinned index is not served from it.
	opts.Platform = "linux/amd64"
	_, digest3, err := builderimage.Unpack(t.Context(), ref, cacheDir, opts)
	if err != nil || digest3 == digest {
		t.Errorf("Unpack(linux/amd64) = %s, %v; want the amd64 image", digest3, err)
	}
}

func TestParseErrors(t *testing.T) {
	dir := writeLayout(t, appendLayers(t, upperLayer(t, "x")), "v1")
	tests := []struct {
		name, ref, want string
	}{
		{"relative layout url", "oci-layout://relative/path", "absolute path"},
		{"not a layout", "oci-layout://" + t.TempDir(), "not an OCI image layout"},
		{"missing tag", dir + ":v2", `no manifest tagged "v2"`},
		{"missing digest", dir + "@sha256:" + strings.Repeat("0", 64), "no such file"},
		{"bad registry ref", "Registry.example/UPPER:tag", "could not parse reference"},
		{"empty tag", dir + ":", "empty tag"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := builderimage.Resolve(t.Context(), tc.ref, builderimage.Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Resolve(%q) = %v, want an error containing %q", tc.ref, err, tc.want)
			}
		})
	}
}

func TestResolveInsecureTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ref := strings.TrimPrefix(srv.URL, "https://") + "/builders/tls:v1"
	img := appendLayers(t, upperLayer(t, "tls\n"))
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithTransport(srv.Client().Transport)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		insecure bool
		wantErr  bool
	}{
		{"verified", false, true}, // the test server's certificate is self-signed
		{"insecure", true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := builderimage.Resolve(t.Context(), ref, builderimage.Options{Insecure: tc.insecure})
			if (err != nil) != tc.wantErr {
				t.Fatalf("Resolve(Insecure: %v) = %q, %v; want error %v", tc.insecure, got, err, tc.wantErr)
			}
			if err == nil && got != digestOf(t, img).String() {
				t.Errorf("Resolve() = %s, want %s", got, digestOf(t, img))
			}
		})
	}
}
