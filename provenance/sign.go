package provenance

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"syscall"

	slsa "github.com/in-toto/attestation/go/predicates/provenance/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	"github.com/opencontainers/go-digest"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/imsbuild/imsbuild/internal/ctxio"
)

// Limits on what Verify reads: an envelope is hostile input until its
// signature verifies.
const (
	MaxEnvelope   = 16 << 20
	maxSignatures = 16
)

// Errors that Verify wraps, for callers that classify (errors.Is).
var (
	// ErrSignature: no signature of the envelope verifies with the key (a
	// wrong key, or a payload changed after signing).
	ErrSignature = errors.New("signature does not verify with the given key")
	// ErrSubject: an artifact is not a subject, or its digest differs from
	// the subject's (the artifact changed after signing).
	ErrSubject = errors.New("artifact does not match the provenance")
)

// Sign signs statement (Statement's output) with key, an ed25519 or ECDSA
// P-256 private key (any crypto.Signer of such a public key), and returns the DSSE envelope as one line of JSON: the
// form of an .intoto.jsonl file and of cosign's --signature file. An
// ed25519 envelope is deterministic; an ECDSA signature is randomized, so
// its envelope differs between two signings of the same statement (both
// verify).
func Sign(ctx context.Context, statement []byte, key crypto.Signer) ([]byte, error) {
	sv, err := newSignerVerifier(key)
	if err != nil {
		return nil, fmt.Errorf("sign provenance: %w", err)
	}
	es, err := dsse.NewEnvelopeSigner(sv)
	if err != nil {
		return nil, fmt.Errorf("sign provenance: %w", err)
	}
	env, err := es.SignPayload(ctx, PayloadType, statement)
	if err != nil {
		return nil, fmt.Errorf("sign provenance: %w", err)
	}
	b, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("sign provenance: %w", err)
	}
	return append(b, '\n'), nil
}

// Verified is a provenance whose signature and subjects were checked.
type Verified struct {
	Statement  *intoto.Statement
	Provenance *slsa.Provenance
}

// Verify checks the DSSE envelope against pub and then that every artifact
// (name → file path; at least one) is a subject of the statement with the
// file's sha256 digest. The files are hashed only after the signature
// verifies. It returns the verified statement for policy checks (Check).
// Nothing in the payload is trusted before the signature verifies.
func Verify(ctx context.Context, envelope []byte, pub crypto.PublicKey, artifacts map[string]string) (*Verified, error) {
	if len(artifacts) == 0 {
		return nil, fmt.Errorf("verify provenance: no artifacts to check")
	}
	v, err := verifyEnvelope(ctx, envelope, pub)
	if err != nil {
		return nil, fmt.Errorf("verify provenance: %w", err)
	}
	digests := make(map[string]digest.Digest, len(artifacts))
	for _, name := range slices.Sorted(maps.Keys(artifacts)) {
		d, err := fileDigest(ctx, artifacts[name])
		if err != nil {
			return nil, fmt.Errorf("verify provenance: artifact %s: %w", name, err)
		}
		digests[name] = d
	}
	if err := v.matchSubjects(digests); err != nil {
		return nil, err
	}
	return v, nil
}

// VerifyDigests is Verify for artifacts whose digests the caller knows (a
// content-addressed store verifies them as it reads).
func VerifyDigests(ctx context.Context, envelope []byte, pub crypto.PublicKey, artifacts map[string]digest.Digest) (*Verified, error) {
	if len(artifacts) == 0 {
		return nil, fmt.Errorf("verify provenance: no artifacts to check")
	}
	v, err := verifyEnvelope(ctx, envelope, pub)
	if err != nil {
		return nil, fmt.Errorf("verify provenance: %w", err)
	}
	if err := v.matchSubjects(artifacts); err != nil {
		return nil, err
	}
	return v, nil
}

// matchSubjects checks that every artifact is a subject with its digest.
func (v *Verified) matchSubjects(artifacts map[string]digest.Digest) error {
	subjects := map[string]string{}
	for _, s := range v.Statement.GetSubject() {
		subjects[s.GetName()] = s.GetDigest()["sha256"]
	}
	for _, name := range slices.Sorted(maps.Keys(artifacts)) {
		d := artifacts[name]
		want, ok := subjects[name]
		switch {
		case !ok:
			return fmt.Errorf("verify provenance: artifact %s: %w: it is not a subject (subjects: %v)", name, ErrSubject, slices.Sorted(maps.Keys(subjects)))
		case d.Algorithm() != digest.SHA256:
			return fmt.Errorf("verify provenance: artifact %s: digest %s is not sha256", name, d)
		case want != d.Encoded():
			return fmt.Errorf("verify provenance: artifact %s: %w: its digest is %s, the signed subject's sha256:%s", name, ErrSubject, d, want)
		}
	}
	return nil
}

func verifyEnvelope(ctx context.Context, envelope []byte, pub crypto.PublicKey) (*Verified, error) {
	if len(envelope) > MaxEnvelope {
		return nil, fmt.Errorf("envelope larger than %d bytes", MaxEnvelope)
	}
	pub, err := checkPublic(pub)
	if err != nil {
		return nil, err
	}
	var env dsse.Envelope
	if err := json.Unmarshal(envelope, &env); err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	if len(env.Signatures) > maxSignatures {
		return nil, fmt.Errorf("envelope has %d signatures, at most %d are read", len(env.Signatures), maxSignatures)
	}
	if env.PayloadType != PayloadType {
		return nil, fmt.Errorf("envelope payload type %q, want %q", env.PayloadType, PayloadType)
	}
	ev, err := dsse.NewEnvelopeVerifier(&signerVerifier{pub: pub})
	if err != nil {
		return nil, err
	}
	_, payload, err := ev.VerifyAndDecode(ctx, &env)
	if err != nil {
		return nil, fmt.Errorf("%w (%v)", ErrSignature, err)
	}
	st := &intoto.Statement{}
	if err := protojson.Unmarshal(payload, st); err != nil {
		return nil, fmt.Errorf("statement: %w", err)
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("statement: %w", err)
	}
	if st.GetType() != intoto.StatementTypeUri || st.GetPredicateType() != PredicateType {
		return nil, fmt.Errorf("statement %s with predicate %s, want %s with %s", st.GetType(), st.GetPredicateType(), intoto.StatementTypeUri, PredicateType)
	}
	predJSON, err := protojson.Marshal(st.GetPredicate())
	if err != nil {
		return nil, fmt.Errorf("predicate: %w", err)
	}
	prov := &slsa.Provenance{}
	if err := protojson.Unmarshal(predJSON, prov); err != nil {
		return nil, fmt.Errorf("predicate: %w", err)
	}
	if err := prov.Validate(); err != nil {
		return nil, fmt.Errorf("predicate: %w", err)
	}
	return &Verified{Statement: st, Provenance: prov}, nil
}

// fileDigest hashes a regular file. Artifacts may come from a downloaded,
// untrusted directory: a FIFO opened without O_NONBLOCK would wait forever.
func fileDigest(ctx context.Context, path string) (digest.Digest, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return "", err
	} else if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	h := sha256.New()
	// A rootfs is gigabytes: stop on cancellation between reads.
	if _, err := io.Copy(h, ctxio.Reader(ctx, f)); err != nil {
		return "", err
	}
	return digest.NewDigest(digest.SHA256, h), nil
}

// signerVerifier adapts a key to dsse's Signer and Verifier with the
// signature encodings cosign and sigstore use: ed25519 over the PAE
// message, ECDSA P-256 ASN.1 over its SHA-256. The private key is any
// crypto.Signer of such a public key (a key decrypted only when a
// signature is needed, a hardware key).
type signerVerifier struct {
	priv crypto.Signer // nil for a verifier
	pub  crypto.PublicKey
}

func newSignerVerifier(key crypto.Signer) (*signerVerifier, error) {
	if key == nil {
		return nil, fmt.Errorf("no key")
	}
	pub, err := checkPublic(key.Public())
	if err != nil {
		return nil, err
	}
	return &signerVerifier{priv: key, pub: pub}, nil
}

func (s *signerVerifier) Sign(_ context.Context, data []byte) ([]byte, error) {
	return SignBlob(s.priv, data)
}

func (s *signerVerifier) Verify(_ context.Context, data, sig []byte) error {
	return VerifyBlob(s.pub, data, sig)
}

// SignBlob signs data as sigstore's verifiers expect: ed25519 over the
// message, ECDSA P-256 (ASN.1, as ecdsa.SignASN1) over its SHA-256. Both
// DSSE envelopes and cosign's image signatures are signed so.
func SignBlob(key crypto.Signer, data []byte) ([]byte, error) {
	switch pub := key.Public().(type) {
	case ed25519.PublicKey:
		return key.Sign(nil, data, crypto.Hash(0))
	case *ecdsa.PublicKey:
		sum := sha256.Sum256(data)
		return key.Sign(rand.Reader, sum[:], crypto.SHA256)
	default:
		return nil, fmt.Errorf("unsupported key %T", pub)
	}
}

// VerifyBlob checks a signature SignBlob made; a mismatch is ErrSignature.
func VerifyBlob(pub crypto.PublicKey, data, sig []byte) error {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if ed25519.Verify(k, data, sig) {
			return nil
		}
	case *ecdsa.PublicKey:
		sum := sha256.Sum256(data)
		if ecdsa.VerifyASN1(k, sum[:], sig) {
			return nil
		}
	}
	return ErrSignature
}

// KeyID is empty: DSSE key ids are unauthenticated hints, cosign writes
// none, and sigstore's verifier skips a signature whose key id differs from
// the one it derives.
func (s *signerVerifier) KeyID() (string, error) { return "", nil }

func (s *signerVerifier) Public() crypto.PublicKey { return s.pub }
