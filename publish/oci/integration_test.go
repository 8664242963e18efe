package oci_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/registrytest"
	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/publish"
	"github.com/imsbuild/imsbuild/publish/oci"
)

// squashfsRoot packs a busybox root with mksquashfs, as pack does.
func squashfsRoot(t *testing.T) (rootfs, kernel []byte) {
	t.Helper()
	mksquashfs := testutil.RequireTool(t, "mksquashfs")
	root := testutil.BusyboxRoot(t, true)
	out := filepath.Join(t.TempDir(), "rootfs")
	cmd := exec.CommandContext(t.Context(), mksquashfs, root, out, "-noappend", "-reproducible",
		"-mkfs-time", "0", "-all-time", "0", "-comp", "zstd", "-Xcompression-level", "3", "-b", "1M", "-quiet", "-no-progress")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, b)
	}
	rootfs, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	kernel, err = os.ReadFile(filepath.Join(root, "boot/vmlinuz"))
	if err != nil {
		t.Fatal(err)
	}
	return rootfs, kernel
}

func crane(ctx context.Context, t *testing.T, args ...string) []byte {
	t.Helper()
	bin := testutil.RequireTool(t, "crane")
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, append(args, "--insecure")...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("crane %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func TestDockerRegistry(t *testing.T) {
	if testing.Short() {
		t.Skip("runs docker-registry")
	}
	testutil.RequireTool(t, "crane")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	reg := registrytest.Start(t)
	rootfs, kernel := squashfsRoot(t)
	arts := map[string][]byte{"rootfs": rootfs, "kernel": kernel}
	store := newStore(t)
	img := testImage(t, store, arts)
	repo := reg.Ref("hpc/compute-bookworm")
	c := newCounter()
	cfg := oci.Config{Repository: repo, Tags: []string{"bookworm", "latest"}, Insecure: true, Source: "https://git.example/images", Revision: "0123abc"}
	p, err := oci.New(cfg, oci.WithTransport(c))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := p.PushImage(ctx, store, img)
	if err != nil {
		t.Fatalf("PushImage() = %v", err)
	}
	if got := c.get("POST upload"); got != 3 {
		t.Errorf("first push: %d blob uploads, want 3 (rootfs, kernel, config)", got)
	}

	t.Run("crane manifest", func(t *testing.T) {
		var m ocispec.Manifest
		if err := json.Unmarshal(crane(ctx, t, "manifest", repo+":bookworm"), &m); err != nil {
			t.Fatal(err)
		}
		if m.ArtifactType != oci.ArtifactType || m.Config.MediaType != ocispec.MediaTypeEmptyJSON {
			t.Errorf("artifactType %q config %q, want %q and the empty descriptor", m.ArtifactType, m.Config.MediaType, oci.ArtifactType)
		}
		for k, want := range map[string]string{
			ocispec.AnnotationCreated:  "2024-05-01T12:30:00Z",
			ocispec.AnnotationSource:   cfg.Source,
			ocispec.AnnotationRevision: cfg.Revision,
			oci.AnnotationName:         img.Name,
			oci.AnnotationArch:         img.Arch,
			oci.AnnotationKey:          img.Key,
		} {
			if got := m.Annotations[k]; got != want {
				t.Errorf("annotation %s = %q, want %q", k, got, want)
			}
		}
		if _, err := ims.ParseManifest([]byte(m.Annotations[oci.AnnotationIMSManifest])); err != nil {
			t.Errorf("IMS manifest annotation: %v", err)
		}
		if len(m.Layers) != 2 {
			t.Fatalf("%d layers, want 2", len(m.Layers))
		}
		for i, n := range []string{"rootfs", "kernel"} {
			l := m.Layers[i]
			if l.Annotations[ocispec.AnnotationTitle] != n || l.MediaType != ims.MediaTypeOf(n) || l.Digest.String() != sha(arts[n]) {
				t.Errorf("layer %d = %+v, want %s %s %s", i, l, n, ims.MediaTypeOf(n), sha(arts[n]))
			}
			// crane blob returns the very bytes that were pushed.
			if got := sha(crane(ctx, t, "blob", repo+"@"+l.Digest.String())); got != sha(arts[n]) {
				t.Errorf("crane blob %s = %s, want %s", n, got, sha(arts[n]))
			}
		}
		if d := strings.TrimSpace(string(crane(ctx, t, "digest", repo+":latest"))); !strings.HasSuffix(ref, "@"+d) {
			t.Errorf("crane digest :latest = %s, want the pushed %s", d, ref)
		}
	})

	t.Run("Pull", func(t *testing.T) {
		dst := t.TempDir()
		got, err := oci.Pull(ctx, ref, dst, true)
		if err != nil {
			t.Fatalf("Pull() = %v", err)
		}
		for n, data := range arts {
			b, err := os.ReadFile(got[n].Path)
			if err != nil || !bytes.Equal(b, data) {
				t.Errorf("pulled %s: sha %s, %v; want %s", n, sha(b), err, sha(data))
			}
		}
		if len(got) != len(arts) {
			t.Errorf("Pull() returned %d artifacts, want %d", len(got), len(arts))
		}
	})

	t.Run("second push uploads nothing", func(t *testing.T) {
		c.reset()
		if err := p.Publish(ctx, store, []publish.Image{img}); err != nil {
			t.Fatal(err)
		}
		if got := c.get("POST upload") + c.get("PATCH upload") + c.get("PUT upload"); got != 0 {
			t.Errorf("second push: %d upload requests, want 0", got)
		}
		if got := c.get("PUT manifest"); got != 0 {
			t.Errorf("second push: %d manifest PUTs, want 0", got)
		}
	})

	t.Run("new manifest reuses blobs", func(t *testing.T) {
		c.reset()
		cfg2 := cfg
		cfg2.Revision = "4567def"
		p2, err := oci.New(cfg2, oci.WithTransport(c))
		if err != nil {
			t.Fatal(err)
		}
		if err := p2.Publish(ctx, store, []publish.Image{img}); err != nil {
			t.Fatal(err)
		}
		if got := c.get("POST upload"); got != 0 {
			t.Errorf("%d blob uploads, want 0", got)
		}
		if got := c.get("PUT manifest"); got != 3 {
			t.Errorf("%d manifest PUTs, want 3 (by digest, then one per tag)", got)
		}
	})

	t.Run("wrong registry host", func(t *testing.T) {
		host := closedHost(t)
		bad, err := oci.New(oci.Config{Repository: host + "/hpc/compute", Insecure: true})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err = bad.Publish(ctx, store, []publish.Image{img})
		if err == nil || !strings.Contains(err.Error(), "push "+host+"/hpc/compute@sha256:") {
			t.Errorf("Publish() = %v, want an error naming %s/hpc/compute@sha256:…", err, host)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("Publish() took %s to fail", d)
		}
	})
}

// The SBOM output is pushed as a referrer of the image manifest: the real
// oras CLI finds it on docker-registry, which has no referrers API, through
// the referrers tag schema, and its one layer is the document.
func TestSBOMReferrerOrasDiscover(t *testing.T) {
	if testing.Short() {
		t.Skip("runs docker-registry and oras")
	}
	testutil.RequireTool(t, "oras")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	reg := registrytest.Start(t)
	doc := []byte(`{"spdxVersion":"SPDX-2.3","name":"compute-bookworm"}` + "\n")
	store := newStore(t)
	img := testImage(t, store, map[string][]byte{"rootfs": []byte("hsqs rootfs"), ims.SBOMFile: doc})
	repo := reg.Ref("hpc/compute")
	c := newCounter()
	p, err := oci.New(oci.Config{Repository: repo, Insecure: true}, oci.WithTransport(c))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := p.PushImage(ctx, store, img)
	if err != nil {
		t.Fatalf("PushImage() = %v", err)
	}
	// The image manifest itself is unchanged: the SBOM is no layer of it.
	var m ocispec.Manifest
	if err := json.Unmarshal(crane(ctx, t, "manifest", ref), &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != 1 || m.Layers[0].Annotations[ocispec.AnnotationTitle] != "rootfs" {
		t.Errorf("image manifest layers %+v, want the rootfs only", m.Layers)
	}

	referrers, out := orasDiscover(ctx, t, ref)
	if len(referrers) != 1 || referrers[0].ArtifactType != ims.MediaTypeSPDX {
		t.Fatalf("oras discover = %s, want one %s referrer", out, ims.MediaTypeSPDX)
	}
	var sm ocispec.Manifest
	if err := json.Unmarshal(crane(ctx, t, "manifest", repo+"@"+referrers[0].Digest), &sm); err != nil {
		t.Fatal(err)
	}
	if sm.Subject == nil || !strings.HasSuffix(ref, "@"+sm.Subject.Digest.String()) || len(sm.Layers) != 1 ||
		sm.Layers[0].MediaType != ims.MediaTypeSPDX || sm.Layers[0].Annotations[ocispec.AnnotationTitle] != ims.SBOMFile {
		t.Fatalf("SBOM manifest = %+v, want subject %s and one %s layer", sm, ref, ims.MediaTypeSPDX)
	}
	if b := crane(ctx, t, "blob", repo+"@"+sm.Layers[0].Digest.String()); !bytes.Equal(b, doc) {
		t.Errorf("SBOM blob = %q, want %q", b, doc)
	}

	// A republish pushes nothing and leaves one referrer.
	c.reset()
	if _, err := p.PushImage(ctx, store, img); err != nil {
		t.Fatalf("PushImage() again = %v", err)
	}
	if n := c.get("PUT manifest") + c.get("POST upload"); n != 0 {
		t.Errorf("republish: %d manifest PUTs and uploads, want 0", n)
	}
	if referrers, out := orasDiscover(ctx, t, ref); len(referrers) != 1 {
		t.Errorf("oras discover after republish = %s, want one referrer", out)
	}
}
