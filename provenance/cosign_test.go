package provenance

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/imsbuild/imsbuild/internal/testutil"
)

func verifyBlobAttestation(t *testing.T, dir, pub, env, artifact string) (string, bool) {
	t.Helper()
	return testutil.Cosign(t.Context(), t, dir, "pw", "verify-blob-attestation", "--key", pub, "--insecure-ignore-tlog",
		"--type", "slsaprovenance1", "--signature", env, artifact)
}

func subjectIndex(b Build, name string) int {
	for i, s := range b.Subjects {
		if s.Name == name {
			return i
		}
	}
	return -1
}

// TestCosignVerifiesEnvelope: the real cosign accepts what Sign writes,
// with a key made by cosign generate-key-pair (read in its encrypted form)
// and with an ed25519 key, and rejects a wrong key, a changed artifact and a
// changed payload.
func TestCosignVerifiesEnvelope(t *testing.T) {
	testutil.RequireTool(t, "cosign")
	dir := t.TempDir()
	if out, ok := testutil.Cosign(t.Context(), t, dir, "pw", "generate-key-pair"); !ok {
		t.Fatalf("cosign generate-key-pair: %s", out)
	}
	files, b := artifacts(t)
	st, err := Statement(b)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "cosign.key"))
	if err != nil {
		t.Fatal(err)
	}
	cosignKey, err := ParsePrivateKey(keyPEM, []byte("pw"))
	if err != nil {
		t.Fatalf("ParsePrivateKey(cosign.key) = %v", err)
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edPub, err := MarshalPublicKey(edKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ed25519.pub"), edPub, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, pub, otherPub string
		key                 crypto.Signer
	}{
		{"cosign key", "cosign.pub", "ed25519.pub", cosignKey},
		{"ed25519", "ed25519.pub", "cosign.pub", edKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, err := Sign(t.Context(), st, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			envPath := filepath.Join(t.TempDir(), "provenance.intoto.jsonl")
			if err := os.WriteFile(envPath, env, 0o644); err != nil {
				t.Fatal(err)
			}
			out, ok := verifyBlobAttestation(t, dir, tc.pub, envPath, files["rootfs"])
			if !ok || !strings.Contains(out, "Verified OK") {
				t.Fatalf("cosign rejects the envelope:\n%s\n%s", out, env)
			}

			if out, ok := verifyBlobAttestation(t, dir, tc.pub, envPath, files["kernel"]); !ok {
				t.Errorf("cosign rejects the envelope for the kernel:\n%s", out)
			}
			if out, ok := verifyBlobAttestation(t, dir, tc.otherPub, envPath, files["rootfs"]); ok {
				t.Errorf("cosign accepts the envelope with the wrong key:\n%s", out)
			}
			flipped := filepath.Join(t.TempDir(), "rootfs")
			data, _ := os.ReadFile(files["rootfs"])
			data[0] ^= 1
			if err := os.WriteFile(flipped, data, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, ok := verifyBlobAttestation(t, dir, tc.pub, envPath, flipped); ok {
				t.Errorf("cosign accepts a changed artifact:\n%s", out)
			}
			// The payload rewritten to name the changed rootfs, under the
			// original signature.
			var e dsse.Envelope
			if err := json.Unmarshal(env, &e); err != nil {
				t.Fatal(err)
			}
			payload, _ := base64.StdEncoding.DecodeString(e.Payload)
			changed := bytes.Replace(payload, []byte(b.Subjects[subjectIndex(b, "rootfs")].Digest.Encoded()), []byte(digest.FromBytes(data).Encoded()), 1)
			if bytes.Equal(changed, payload) {
				t.Fatal("the rootfs digest is not in the payload")
			}
			e.Payload = base64.StdEncoding.EncodeToString(changed)
			tampered, _ := json.Marshal(e)
			tp := filepath.Join(t.TempDir(), "tampered.jsonl")
			if err := os.WriteFile(tp, tampered, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, ok := verifyBlobAttestation(t, dir, tc.pub, tp, flipped); ok {
				t.Errorf("cosign accepts a changed payload:\n%s", out)
			}
		})
	}
}
