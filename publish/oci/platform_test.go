package oci_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/publish/oci"
)

// An aarch64 image carries its platform, linux/arm64, in an OCI image
// config (as oras push --artifact-platform writes it); it pulls back as
// any image does. An x86_64 image keeps the empty config (TestPublishManifest).
func TestPublishPlatform(t *testing.T) {
	host := newRegistry(t)
	store := newStore(t)
	img := testImage(t, store, map[string][]byte{"rootfs": []byte("arm64 squashfs"), "kernel": []byte("Image")})
	img.Arch = "aarch64"
	ref := push(t, store, img, oci.Config{Repository: host + "/hpc/arm", Tags: []string{"latest"}})
	m, _ := fetchManifest(t, ref)
	if m.Config.MediaType != ocispec.MediaTypeImageConfig || m.ArtifactType != oci.ArtifactType || m.Annotations[oci.AnnotationArch] != "aarch64" {
		t.Fatalf("manifest config %+v, artifactType %q, arch annotation %q; want an image config, the imsbuild artifact type, aarch64",
			m.Config, m.ArtifactType, m.Annotations[oci.AnnotationArch])
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	ri, err := remote.Image(r, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	cf, err := ri.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if p := cf.Platform(); p == nil || p.String() != "linux/arm64" {
		t.Errorf("config platform = %v, want linux/arm64", p)
	}
	// oras, which reads the platform from the config, says so too.
	if oras := testutil.RequireTool(t, "oras"); oras != "" {
		out, err := exec.Command(oras, "manifest", "fetch-config", "--plain-http", host+"/hpc/arm:latest").CombinedOutput()
		if err != nil || !strings.Contains(string(out), `"architecture":"arm64"`) {
			t.Errorf("oras manifest fetch-config = %s, %v; want architecture arm64", out, err)
		}
	}
	dst := filepath.Join(t.TempDir(), "pulled")
	if _, err := oci.Pull(t.Context(), host+"/hpc/arm:latest", dst, false); err != nil {
		t.Fatalf("Pull() = %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "kernel")); err != nil || !bytes.Equal(b, []byte("Image")) {
		t.Errorf("pulled kernel = %q, %v", b, err)
	}
}
