package provenance

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/secure-systems-lab/go-securesystemslib/encrypted"

	"github.com/imsbuild/imsbuild/internal/testutil"
)

// artifacts writes two artifact files and returns them by name with a
// Build whose subjects are their digests.
func artifacts(t testing.TB) (map[string]string, Build) {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{}
	b := testBuild()
	b.Subjects = nil
	for name, data := range map[string]string{"rootfs": "squashfs bytes", "kernel": "vmlinuz bytes"} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		files[name] = p
		b.Subjects = append(b.Subjects, Artifact{Name: name, Digest: digest.FromString(data)})
	}
	return files, b
}

// signed returns the artifacts, their build and its statement signed
// with a new ed25519 key.
func signed(t testing.TB) (map[string]string, Build, []byte, ed25519.PrivateKey) {
	t.Helper()
	files, b := artifacts(t)
	st, err := Statement(b)
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	env, err := Sign(t.Context(), st, key)
	if err != nil {
		t.Fatal(err)
	}
	return files, b, env, key
}

func pkcs8PEM(t *testing.T, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// keys returns the PEM forms ParsePrivateKey reads, with their passwords.
func keys(t *testing.T) map[string][2][]byte {
	t.Helper()
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sec1, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	ec2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(ec2)
	// cosign's format: the encrypted package's JSON around PKCS#8.
	enc, err := encrypted.Encrypt(der, []byte("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	return map[string][2][]byte{
		"ed25519 pkcs8":   {pkcs8PEM(t, ed), nil},
		"ecdsa pkcs8":     {pkcs8PEM(t, ec), nil},
		"ecdsa sec1":      {pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), nil},
		"ecdsa encrypted": {pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED SIGSTORE PRIVATE KEY", Bytes: enc}), []byte("s3cret")},
	}
}

func TestSignVerify(t *testing.T) {
	files, b := artifacts(t)
	st, err := Statement(b)
	if err != nil {
		t.Fatal(err)
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	for name, k := range keys(t) {
		t.Run(name, func(t *testing.T) {
			key, err := ParsePrivateKey(k[0], k[1])
			if err != nil {
				t.Fatalf("ParsePrivateKey() = %v", err)
			}
			env, err := Sign(t.Context(), st, key)
			if err != nil {
				t.Fatalf("Sign() = %v", err)
			}
			if strings.Count(string(env), "\n") != 1 || !strings.HasSuffix(string(env), "\n") {
				t.Errorf("envelope is not one JSON line: %q", env)
			}
			pubPEM, err := MarshalPublicKey(key.Public())
			if err != nil {
				t.Fatal(err)
			}
			pub, err := ParsePublicKey(pubPEM)
			if err != nil {
				t.Fatal(err)
			}
			v, err := Verify(t.Context(), env, pub, files)
			if err != nil {
				t.Fatalf("Verify() = %v", err)
			}
			if id := v.Provenance.GetRunDetails().GetBuilder().GetId(); id != b.BuilderID {
				t.Errorf("verified builder id = %q, want %q", id, b.BuilderID)
			}
			if _, err := Verify(t.Context(), env, other.Public(), files); !errors.Is(err, ErrSignature) {
				t.Errorf("Verify(wrong key) = %v, want ErrSignature", err)
			}
		})
	}
}

// TestVerifyTampered: each way an attacker could change what was signed
// fails with a message that says what.
func TestVerifyTampered(t *testing.T) {
	files, _, env, key := signed(t)
	pub := key.Public()

	// The payload with another rootfs digest, the signature kept.
	var e dsse.Envelope
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatal(err)
	}
	payload, _ := base64.StdEncoding.DecodeString(e.Payload)
	changed := strings.Replace(string(payload), digest.FromString("squashfs bytes").Encoded(), digest.FromString("evil").Encoded(), 1)
	if changed == string(payload) {
		t.Fatal("the rootfs digest is not in the payload")
	}
	e.Payload = base64.StdEncoding.EncodeToString([]byte(changed))
	changedSubject, _ := json.Marshal(e)
	e.Payload = base64.StdEncoding.EncodeToString(payload)
	e.PayloadType = "text/plain"
	otherType, _ := json.Marshal(e)

	flipped := filepath.Join(t.TempDir(), "rootfs")
	data, _ := os.ReadFile(files["rootfs"])
	data[3] ^= 1
	if err := os.WriteFile(flipped, data, 0o644); err != nil {
		t.Fatal(err)
	}

	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		env       []byte
		artifacts map[string]string
		is        error
		want      string
	}{
		{"changed subject", changedSubject, files, ErrSignature, "signature does not verify"},
		{"flipped byte", env, map[string]string{"rootfs": flipped, "kernel": files["kernel"]}, ErrSubject,
			"artifact rootfs: artifact does not match the provenance: its digest is " + string(digest.FromBytes(data))},
		{"not a subject", env, map[string]string{"initrd": files["kernel"]}, ErrSubject, "artifact initrd: artifact does not match the provenance: it is not a subject (subjects: [kernel rootfs])"},
		{"payload type", otherType, files, nil, `payload type "text/plain"`},
		{"not json", []byte("{"), files, nil, "envelope: unexpected end of JSON input"},
		{"no signature", []byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}`), files, nil, "no signature"},
		{"missing file", env, map[string]string{"rootfs": filepath.Join(t.TempDir(), "gone")}, nil, "artifact rootfs: open"},
		{"fifo", env, map[string]string{"rootfs": fifo}, nil, "artifact rootfs: " + fifo + " is not a regular file"},
		{"directory", env, map[string]string{"rootfs": t.TempDir()}, nil, "is not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(t.Context(), tc.env, pub, tc.artifacts)
			if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Errorf("Verify() = %v, want an error containing %q (is %v)", err, tc.want, tc.is)
			}
		})
	}
	if _, err := Verify(t.Context(), env, pub, nil); err == nil || !strings.Contains(err.Error(), "no artifacts to check") {
		t.Errorf("Verify(no artifacts) = %v, want an error: a signature alone proves nothing about a file", err)
	}
	// The signature is checked before any file is read: a wrong key is
	// reported as such even when the artifact does not exist.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := Verify(t.Context(), env, other.Public(), map[string]string{"rootfs": filepath.Join(t.TempDir(), "gone")}); !errors.Is(err, ErrSignature) {
		t.Errorf("Verify(wrong key, missing file) = %v, want ErrSignature", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Verify(ctx, env, pub, files); !errors.Is(err, context.Canceled) {
		t.Errorf("Verify(cancelled) = %v, want context.Canceled", err)
	}
	// A subset of the subjects verifies: a caller may check only the rootfs.
	if _, err := Verify(t.Context(), env, pub, map[string]string{"rootfs": files["rootfs"]}); err != nil {
		t.Errorf("Verify(rootfs only) = %v", err)
	}
}

func TestParseKeyRejects(t *testing.T) {
	rsaPEM := "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	enc := keys(t)["ecdsa encrypted"][0]
	for _, tc := range []struct {
		name     string
		pem      []byte
		password string
		want     string
	}{
		{"not pem", []byte("hello"), "", "no PEM block"},
		{"rsa", []byte(rsaPEM), "", `unsupported PEM type "RSA PRIVATE KEY"`},
		{"p384", pkcs8PEM(t, p384), "", "ECDSA curve P-384, want P-256"},
		{"no password", enc, "", "wrong or missing password"},
		{"wrong password", enc, "guess", "wrong or missing password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePrivateKey(tc.pem, []byte(tc.password))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParsePrivateKey() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// BenchmarkSign measures making and signing a statement; BenchmarkVerify
// verifying it (digests given).
func BenchmarkSign(b *testing.B) {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, k := range []struct {
		name string
		key  crypto.Signer
	}{{"ed25519", ed}, {"ecdsa-p256", ec}} {
		b.Run(k.name, func(b *testing.B) {
			cpu := testutil.CPUTime(b)
			for b.Loop() {
				st, err := Statement(testBuild())
				if err != nil {
					b.Fatal(err)
				}
				if _, err := Sign(b.Context(), st, k.key); err != nil {
					b.Fatal(err)
				}
			}
			testutil.ReportCPU(b, cpu)
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tb := testBuild()
	st, err := Statement(tb)
	if err != nil {
		b.Fatal(err)
	}
	env, err := Sign(b.Context(), st, ec)
	if err != nil {
		b.Fatal(err)
	}
	digests := map[string]digest.Digest{}
	for _, s := range tb.Subjects {
		digests[s.Name] = s.Digest
	}
	cpu := testutil.CPUTime(b)
	for b.Loop() {
		if _, err := VerifyDigests(b.Context(), env, ec.Public(), digests); err != nil {
			b.Fatal(err)
		}
	}
	testutil.ReportCPU(b, cpu)
}

// FuzzVerify: an envelope is hostile until its signature verifies.
// Whatever the bytes, VerifyDigests returns without panicking, and what it
// accepts carries a statement that names the rootfs with its digest.
func FuzzVerify(f *testing.F) {
	_, b, env, key := signed(f)
	rootfs := b.Subjects[subjectIndex(b, "rootfs")].Digest
	f.Add(env)
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"sig":"AAAA"}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := VerifyDigests(t.Context(), data, key.Public(), map[string]digest.Digest{"rootfs": rootfs})
		if err != nil {
			return
		}
		found := false
		for _, s := range v.Statement.GetSubject() {
			found = found || s.GetName() == "rootfs" && "sha256:"+s.GetDigest()["sha256"] == string(rootfs)
		}
		if !found {
			t.Errorf("accepted an envelope whose statement does not name the rootfs %s", rootfs)
		}
	})
}
