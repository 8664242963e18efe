package oci_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/provenance"
	"github.com/imsbuild/imsbuild/publish/oci"
)

// wrappedSigner is a crypto.Signer that is no private key type, as the
// engine's lazily decrypting signer.
type wrappedSigner struct{ crypto.Signer }

// TestWithSignerAcceptsAnySigner: the key type is judged by the public
// key, so a signer that wraps an ed25519 or P-256 key is accepted.
func TestWithSignerAcceptsAnySigner(t *testing.T) {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, key := range []crypto.Signer{wrappedSigner{ed}, wrappedSigner{p256}} {
		if _, err := oci.New(oci.Config{Repository: "127.0.0.1:5000/hpc/img"}, oci.WithSigner(key)); err != nil {
			t.Errorf("New(WithSigner(%T)) = %v", key.Public(), err)
		}
	}
}

func TestWithSignerRejects(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		key  crypto.Signer
		want string
	}{
		{"nil", nil, "want ed25519 or ECDSA P-256"},
		{"RSA", rsaKey, "*rsa.PublicKey, want ed25519 or ECDSA P-256"},
		{"RSA wrapped", wrappedSigner{rsaKey}, "*rsa.PublicKey, want ed25519 or ECDSA P-256"},
		{"P-384", p384, "ECDSA curve P-384, want P-256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := oci.New(oci.Config{Repository: "127.0.0.1:5000/hpc/img"}, oci.WithSigner(tc.key))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New(WithSigner(%s)) = %v, want an error containing %q", tc.name, err, tc.want)
			}
		})
	}
}

// Without a signer the envelope is pushed byte for byte and no signature
// is made; FetchProvenance returns it and the layers; an image without
// provenance is ErrNoProvenance. On ggcr's registry with and without the
// referrers API.
func TestFetchProvenance(t *testing.T) {
	for _, api := range []bool{false, true} {
		t.Run(fmt.Sprintf("referrers API %v", api), func(t *testing.T) {
			srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(api)))
			t.Cleanup(srv.Close)
			host := strings.TrimPrefix(srv.URL, "http://")
			_, key, _ := ed25519.GenerateKey(rand.Reader)
			arts := map[string][]byte{"rootfs": []byte("rootfs"), "initrd": []byte("initrd")}
			env := provenanceFor(t, key, arts)
			store := newStore(t)
			img := testImage(t, store, arts)
			img.Outputs[ims.ProvenanceFile] = store.Add(t, ims.ProvenanceFile, env)
			ref := push(t, store, img, oci.Config{Repository: host + "/hpc/img"})
			prov, err := oci.FetchProvenance(t.Context(), host+"/hpc/img:latest", false)
			if err != nil {
				t.Fatalf("FetchProvenance() = %v", err)
			}
			if prov.Image != ref || len(prov.Envelopes) != 1 || string(prov.Envelopes[0]) != string(env) {
				t.Errorf("FetchProvenance() = %s with %q, want %s with the pushed envelope", prov.Image, prov.Envelopes, ref)
			}
			want := map[string]digest.Digest{"rootfs": digest.FromBytes(arts["rootfs"]), "initrd": digest.FromBytes(arts["initrd"])}
			if fmt.Sprint(prov.Artifacts) != fmt.Sprint(want) {
				t.Errorf("Artifacts = %v, want %v", prov.Artifacts, want)
			}
			if _, err := prov.Verify(t.Context(), key.Public()); err != nil {
				t.Errorf("Verify() = %v", err)
			}
			sig, _ := name.ParseReference(host + "/hpc/img:" + cosignTag(ref, "sig"))
			if _, err := remote.Head(sig); err == nil {
				t.Errorf("%s exists without a signer", sig)
			}

			// A signer and no provenance: a signature, no attestation.
			bare := testImage(t, store, map[string][]byte{"rootfs": []byte("other")})
			bareRef := push(t, store, bare, oci.Config{Repository: host + "/hpc/bare"}, oci.WithSigner(key))
			if _, err := oci.FetchProvenance(t.Context(), host+"/hpc/bare:latest", false); !errors.Is(err, oci.ErrNoProvenance) {
				t.Errorf("FetchProvenance(no provenance) = %v, want ErrNoProvenance", err)
			}
			sigRef, _ := name.ParseReference(host + "/hpc/bare:" + cosignTag(bareRef, "sig"))
			sigImg, err := remote.Image(sigRef)
			if err != nil {
				t.Fatalf("no signature: %v", err)
			}
			sm, _ := sigImg.Manifest()
			if len(sm.Layers) != 1 || sm.Layers[0].MediaType != oci.MediaTypeSimpleSigning {
				t.Fatalf("signature manifest layers %+v, want one %s", sm.Layers, oci.MediaTypeSimpleSigning)
			}
			l, _ := sigImg.LayerByDigest(sm.Layers[0].Digest)
			rc, _ := l.Compressed()
			payload, _ := io.ReadAll(rc)
			rc.Close()
			sigBytes, _ := base64.StdEncoding.DecodeString(sm.Layers[0].Annotations[oci.AnnotationSignature])
			if !ed25519.Verify(key.Public().(ed25519.PublicKey), payload, sigBytes) || !strings.Contains(string(payload), bareRef[strings.LastIndex(bareRef, "@")+1:]) {
				t.Errorf("signature %q does not verify over %s, or names another manifest", sigBytes, payload)
			}
		})
	}
}

// An attestation layer that claims more than provenance.MaxEnvelope bytes
// is not downloaded.
func TestFetchProvenanceBounded(t *testing.T) {
	host := newRegistry(t)
	store := newStore(t)
	img := testImage(t, store, map[string][]byte{"rootfs": []byte("rootfs")})
	ref := push(t, store, img, oci.Config{Repository: host + "/hpc/img"})
	config := ocispec.DescriptorEmptyJSON
	config.Data = nil
	m, _ := json.Marshal(ocispec.Manifest{
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    config,
		Layers:    []ocispec.Descriptor{{MediaType: oci.MediaTypeDSSE, Digest: digest.FromString("big"), Size: provenance.MaxEnvelope + 1}},
	})
	m = append([]byte(`{"schemaVersion":2,`), m[1:]...)
	att, err := name.ParseReference(host + "/hpc/img:" + cosignTag(ref, "att"))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(att, rawManifest(m)); err != nil {
		t.Fatal(err)
	}
	if _, err := oci.FetchProvenance(t.Context(), ref, false); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("FetchProvenance(huge layer) = %v, want a size error", err)
	}
}
