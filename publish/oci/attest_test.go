package oci_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/registrytest"
	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/provenance"
	"github.com/imsbuild/imsbuild/publish/oci"
)

// signingKeys returns a key made by cosign generate-key-pair (ECDSA P-256,
// read from its encrypted file) and an ed25519 key, each with the path of
// its public key PEM in dir.
func signingKeys(ctx context.Context, t *testing.T, dir string) map[string]struct {
	key crypto.Signer
	pub string
} {
	t.Helper()
	if out, ok := testutil.Cosign(ctx, t, dir, "pw", "generate-key-pair"); !ok {
		t.Fatalf("cosign generate-key-pair: %s", out)
	}
	pemKey, err := os.ReadFile(filepath.Join(dir, "cosign.key"))
	if err != nil {
		t.Fatal(err)
	}
	ck, err := provenance.ParsePrivateKey(pemKey, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	_, ek, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	epub, err := provenance.MarshalPublicKey(ek.Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ed25519.pub"), epub, 0o644); err != nil {
		t.Fatal(err)
	}
	return map[string]struct {
		key crypto.Signer
		pub string
	}{
		"cosign key": {ck, filepath.Join(dir, "cosign.pub")},
		"ed25519":    {ek, filepath.Join(dir, "ed25519.pub")},
	}
}

// provenanceFor signs a provenance statement whose subjects are arts.
func provenanceFor(t *testing.T, key crypto.Signer, arts map[string][]byte) []byte {
	t.Helper()
	b := provenance.Build{
		ExternalParameters: map[string]any{"target": "image.compute"},
		BuilderID:          "https://ci.example/runner/1",
		Version:            "test",
	}
	for n, data := range arts {
		b.Subjects = append(b.Subjects, provenance.Artifact{Name: n, Digest: digest.FromBytes(data)})
	}
	st, err := provenance.Statement(b)
	if err != nil {
		t.Fatal(err)
	}
	env, err := provenance.Sign(t.Context(), st, key)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// manifestPuts records the references of manifest PUTs in order.
type manifestPuts struct {
	rt   http.RoundTripper
	mu   sync.Mutex
	refs []string
}

func (m *manifestPuts) RoundTrip(req *http.Request) (*http.Response, error) {
	if _, ref, ok := strings.Cut(req.URL.Path, "/manifests/"); ok && req.Method == http.MethodPut {
		m.mu.Lock()
		m.refs = append(m.refs, ref)
		m.mu.Unlock()
	}
	return m.rt.RoundTrip(req)
}

func (m *manifestPuts) take() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.refs
	m.refs = nil
	return out
}

// orasReferrer is an entry of oras discover's JSON output.
type orasReferrer struct {
	Digest       string `json:"digest"`
	ArtifactType string `json:"artifactType"`
}

// orasDiscover returns the referrers of ref that the real oras CLI finds,
// and its output for messages.
func orasDiscover(ctx context.Context, t *testing.T, ref string) ([]orasReferrer, []byte) {
	t.Helper()
	bin := testutil.RequireTool(t, "oras")
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "discover", "--plain-http", "--format", "json", ref)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("oras discover %s: %v\n%s", ref, err, stderr.Bytes())
	}
	var got struct {
		Referrers []orasReferrer `json:"referrers"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("oras discover output: %v\n%s", err, out)
	}
	return got.Referrers, out
}

// orasReferrers returns the sorted artifact types of ref's referrers.
func orasReferrers(ctx context.Context, t *testing.T, ref string) []string {
	t.Helper()
	refs, _ := orasDiscover(ctx, t, ref)
	var types []string
	for _, r := range refs {
		types = append(types, r.ArtifactType)
	}
	slices.Sort(types)
	return types
}

// An image published with a signer and a provenance output: the real
// cosign verifies its attestation (cosign's .att layout) and its signature
// with the public key and rejects the other key; oras discover lists the
// SBOM and the provenance as referrers on docker-registry (no referrers
// API: the tag schema); FetchProvenance finds the envelope and it verifies
// against the image's layers; the tags are pushed last; a republish pushes
// nothing and adds no referrer, even with ECDSA's randomized signatures.
func TestAttestationCosignVerifies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs docker-registry, cosign and oras")
	}
	testutil.RequireTool(t, "cosign")
	testutil.RequireTool(t, "oras")
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	reg := registrytest.Start(t)
	dir := t.TempDir()
	keys := signingKeys(ctx, t, dir)
	arts := map[string][]byte{"rootfs": []byte("hsqs rootfs bytes"), "kernel": []byte("vmlinuz bytes")}
	sbom := []byte(`{"spdxVersion":"SPDX-2.3"}` + "\n")

	for _, tc := range []struct{ name, other string }{{"cosign key", "ed25519"}, {"ed25519", "cosign key"}} {
		t.Run(tc.name, func(t *testing.T) {
			key, pub, otherPub := keys[tc.name].key, keys[tc.name].pub, keys[tc.other].pub
			store := newStore(t)
			img := testImage(t, store, arts)
			img.Outputs[ims.SBOMFile] = store.Add(t, ims.SBOMFile, sbom)
			img.Outputs[ims.ProvenanceFile] = store.Add(t, ims.ProvenanceFile, provenanceFor(t, key, arts))
			repo := reg.Ref("hpc/" + strings.ReplaceAll(tc.name, " ", "-"))
			puts := &manifestPuts{rt: http.DefaultTransport}
			p, err := oci.New(oci.Config{Repository: repo, Tags: []string{"latest"}}, oci.WithSigner(key), oci.WithTransport(puts))
			if err != nil {
				t.Fatal(err)
			}
			ref, err := p.PushImage(ctx, store, img)
			if err != nil {
				t.Fatalf("PushImage() = %v", err)
			}
			d := ref[strings.LastIndex(ref, "@")+1:]
			tagPrefix := strings.Replace(d, ":", "-", 1)
			// The manifest by digest, the SBOM referrer (by digest), the
			// attestation and the signature, and the tag last; the
			// referrers tag schema's index after each referrer.
			kind := func(ref string) string {
				switch {
				case ref == d:
					return "image"
				case strings.HasPrefix(ref, "sha256:"):
					return "sbom"
				case ref == tagPrefix:
					return "referrers index"
				case strings.HasPrefix(ref, tagPrefix):
					return ref[len(tagPrefix):]
				}
				return ref
			}
			var got []string
			for _, r := range puts.take() {
				got = append(got, kind(r))
			}
			if want := []string{"image", "sbom", "referrers index", ".att", "referrers index", ".sig", "latest"}; !slices.Equal(got, want) {
				t.Errorf("manifest PUTs %v, want %v", got, want)
			}

			verifyAtt := func(pub, ref string) (string, bool) {
				return testutil.Cosign(ctx, t, dir, "pw", "verify-attestation", "--key", pub, "--insecure-ignore-tlog",
					"--allow-http-registry", "--type", "slsaprovenance1", ref)
			}
			if out, ok := verifyAtt(pub, ref); !ok || !strings.Contains(out, "The signatures were verified against the specified public key") {
				t.Errorf("cosign verify-attestation rejects the image:\n%s", out)
			}
			if out, ok := verifyAtt(otherPub, ref); ok || !strings.Contains(out, "no matching attestations") {
				t.Errorf("cosign verify-attestation accepts the other key:\n%s", out)
			}
			if out, ok := verifyAtt(pub, repo+":latest"); !ok {
				t.Errorf("cosign verify-attestation rejects the tag:\n%s", out)
			}
			verifySig := func(pub string) (string, bool) {
				return testutil.Cosign(ctx, t, dir, "pw", "verify", "--key", pub, "--insecure-ignore-tlog", "--allow-http-registry", ref)
			}
			if out, ok := verifySig(pub); !ok || !strings.Contains(out, "The signatures were verified against the specified public key") {
				t.Errorf("cosign verify rejects the signature:\n%s", out)
			}
			if out, ok := verifySig(otherPub); ok || !strings.Contains(out, "no matching signatures") {
				t.Errorf("cosign verify accepts the other key:\n%s", out)
			}

			want := []string{ims.MediaTypeSPDX, oci.MediaTypeDSSE}
			if got := orasReferrers(ctx, t, ref); !slices.Equal(got, want) {
				t.Errorf("oras discover artifact types = %v, want %v", got, want)
			}

			prov, err := oci.FetchProvenance(ctx, repo+":latest", false)
			if err != nil {
				t.Fatalf("FetchProvenance() = %v", err)
			}
			if prov.Image != ref || len(prov.Envelopes) != 1 {
				t.Errorf("FetchProvenance() = %s with %d envelopes, want %s with 1", prov.Image, len(prov.Envelopes), ref)
			}
			for n, data := range arts {
				if prov.Artifacts[n] != digest.FromBytes(data) {
					t.Errorf("artifact %s = %s, want %s", n, prov.Artifacts[n], digest.FromBytes(data))
				}
			}
			v, err := prov.Verify(ctx, key.Public())
			if err != nil {
				t.Fatalf("Verify() = %v", err)
			}
			if got := v.Provenance.GetRunDetails().GetBuilder().GetId(); got != "https://ci.example/runner/1" {
				t.Errorf("builder id %q", got)
			}
			if _, err := prov.Verify(ctx, keys[tc.other].key.Public()); !errors.Is(err, provenance.ErrSignature) {
				t.Errorf("Verify(other key) = %v, want ErrSignature", err)
			}

			// A republish with a new Publisher finds everything in place.
			p2, err := oci.New(oci.Config{Repository: repo, Tags: []string{"latest"}}, oci.WithSigner(key), oci.WithTransport(puts))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p2.PushImage(ctx, store, img); err != nil {
				t.Fatalf("PushImage() again = %v", err)
			}
			if got := puts.take(); len(got) != 0 {
				t.Errorf("republish PUT manifests %v, want none", got)
			}
			if got := orasReferrers(ctx, t, ref); !slices.Equal(got, want) {
				t.Errorf("oras discover after republish = %v, want %v", got, want)
			}
		})
	}
}

// A rootfs changed after its provenance was signed: a Publisher with the
// signer refuses to push it (nothing reaches the registry); one without
// pushes the envelope as it is, and both FetchProvenance+Verify and the
// real cosign reject the image, also when the valid attestation of the
// original image is copied onto it.
func TestAttestationTamperedImage(t *testing.T) {
	if testing.Short() {
		t.Skip("runs docker-registry, cosign and crane")
	}
	testutil.RequireTool(t, "cosign")
	testutil.RequireTool(t, "crane")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	reg := registrytest.Start(t)
	dir := t.TempDir()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := provenance.MarshalPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(dir, "key.pub")
	if err := os.WriteFile(pub, pubPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	arts := map[string][]byte{"rootfs": []byte("hsqs rootfs bytes"), "kernel": []byte("vmlinuz bytes")}
	env := provenanceFor(t, key, arts)
	repo := reg.Ref("hpc/compute")
	store := newStore(t)
	good := testImage(t, store, arts)
	good.Outputs[ims.ProvenanceFile] = store.Add(t, ims.ProvenanceFile, env)
	signer, err := oci.New(oci.Config{Repository: repo, Tags: []string{"good"}}, oci.WithSigner(key))
	if err != nil {
		t.Fatal(err)
	}
	goodRef, err := signer.PushImage(ctx, store, good)
	if err != nil {
		t.Fatalf("PushImage(good) = %v", err)
	}

	tampered := testImage(t, store, map[string][]byte{"rootfs": []byte("hsqs rootfs bytez"), "kernel": arts["kernel"]})
	tampered.Outputs[ims.ProvenanceFile] = good.Outputs[ims.ProvenanceFile]
	puts := &manifestPuts{rt: http.DefaultTransport}
	signer, err = oci.New(oci.Config{Repository: repo, Tags: []string{"tampered"}}, oci.WithSigner(key), oci.WithTransport(puts))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signer.PushImage(ctx, store, tampered); !errors.Is(err, provenance.ErrSubject) || !strings.Contains(err.Error(), "rootfs") {
		t.Errorf("PushImage(tampered) with the signer = %v, want ErrSubject naming the rootfs", err)
	}
	if got := puts.take(); len(got) != 0 {
		t.Errorf("PushImage(tampered) with the signer PUT manifests %v, want none", got)
	}

	plain, err := oci.New(oci.Config{Repository: repo, Tags: []string{"tampered"}})
	if err != nil {
		t.Fatal(err)
	}
	badRef, err := plain.PushImage(ctx, store, tampered)
	if err != nil {
		t.Fatalf("PushImage(tampered) without a signer = %v", err)
	}
	verifyAtt := func() (string, bool) {
		return testutil.Cosign(ctx, t, dir, "pw", "verify-attestation", "--key", pub, "--insecure-ignore-tlog",
			"--allow-http-registry", "--type", "slsaprovenance1", badRef)
	}
	verify := func() error {
		t.Helper()
		prov, err := oci.FetchProvenance(ctx, badRef, false)
		if err != nil {
			t.Fatalf("FetchProvenance(tampered) = %v", err)
		}
		_, err = prov.Verify(ctx, key.Public())
		return err
	}
	if err := verify(); !errors.Is(err, provenance.ErrSubject) {
		t.Errorf("Verify(tampered) = %v, want ErrSubject", err)
	}
	if out, ok := verifyAtt(); ok {
		t.Errorf("cosign verify-attestation accepts the tampered image:\n%s", out)
	}

	// The original's valid attestation, moved onto the tampered image.
	att := func(ref string) string {
		return repo + ":" + cosignTag(ref, "att")
	}
	crane(ctx, t, "copy", att(goodRef), att(badRef))
	if err := verify(); !errors.Is(err, provenance.ErrSubject) {
		t.Errorf("Verify(tampered with the original's attestation) = %v, want ErrSubject", err)
	}
	if out, ok := verifyAtt(); ok || !strings.Contains(out, "no matching attestations") {
		t.Errorf("cosign verify-attestation of the tampered image with the original's attestation:\n%s", out)
	}
	// The original still verifies.
	prov, err := oci.FetchProvenance(ctx, repo+":good", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prov.Verify(ctx, key.Public()); err != nil {
		t.Errorf("Verify(good) = %v", err)
	}
}

// cosign appends its own attestations and signatures to the .att and .sig
// tags; a republish of the image keeps them (and pushes nothing).
func TestRepublishKeepsCosignAttachments(t *testing.T) {
	if testing.Short() {
		t.Skip("runs docker-registry and cosign")
	}
	testutil.RequireTool(t, "cosign")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	reg := registrytest.Start(t)
	dir := t.TempDir()
	k := signingKeys(ctx, t, dir)["cosign key"]
	arts := map[string][]byte{"rootfs": []byte("hsqs rootfs bytes")}
	store := newStore(t)
	img := testImage(t, store, arts)
	img.Outputs[ims.ProvenanceFile] = store.Add(t, ims.ProvenanceFile, provenanceFor(t, k.key, arts))
	repo := reg.Ref("hpc/compute")
	publish := func(puts *manifestPuts) string {
		t.Helper()
		p, err := oci.New(oci.Config{Repository: repo}, oci.WithSigner(k.key), oci.WithTransport(puts))
		if err != nil {
			t.Fatal(err)
		}
		ref, err := p.PushImage(ctx, store, img)
		if err != nil {
			t.Fatalf("PushImage() = %v", err)
		}
		return ref
	}
	ref := publish(&manifestPuts{rt: http.DefaultTransport})

	pred := filepath.Join(dir, "scan.json")
	if err := os.WriteFile(pred, []byte(`{"result":"clean"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	const scanType = "https://scanner.example/v1"
	for _, args := range [][]string{
		{"attest", "--key", "cosign.key", "--tlog-upload=false", "--allow-http-registry", "-y", "--type", scanType, "--predicate", pred, ref},
		{"sign", "--key", "cosign.key", "--tlog-upload=false", "--allow-http-registry", "-y", "-a", "by=cosign", ref},
	} {
		if out, ok := testutil.Cosign(ctx, t, dir, "pw", args...); !ok {
			t.Fatalf("cosign %s: %s", args[0], out)
		}
	}

	puts := &manifestPuts{rt: http.DefaultTransport}
	publish(puts)
	if got := puts.take(); len(got) != 0 {
		t.Errorf("republish PUT manifests %v, want none", got)
	}
	for _, typ := range []string{scanType, "slsaprovenance1"} {
		if out, ok := testutil.Cosign(ctx, t, dir, "pw", "verify-attestation", "--key", k.pub, "--insecure-ignore-tlog",
			"--allow-http-registry", "--type", typ, ref); !ok {
			t.Errorf("cosign verify-attestation --type %s after the republish:\n%s", typ, out)
		}
	}
	// Both signatures verify; only cosign's has the annotation.
	if out, ok := testutil.Cosign(ctx, t, dir, "pw", "verify", "--key", k.pub, "--insecure-ignore-tlog", "--allow-http-registry", "-a", "by=cosign", ref); !ok {
		t.Errorf("cosign verify of cosign's own signature after the republish:\n%s", out)
	}
	if out, ok := testutil.Cosign(ctx, t, dir, "pw", "verify", "--key", k.pub, "--insecure-ignore-tlog", "--allow-http-registry", "--output", "json", ref); !ok || strings.Count(out, `"docker-manifest-digest"`) != 2 {
		t.Errorf("cosign verify after the republish, want 2 signatures:\n%s", out)
	}
}
