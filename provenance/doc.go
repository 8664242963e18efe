// Package provenance makes, signs and verifies SLSA provenance for image
// artifacts: an in-toto Statement v1 whose predicate is SLSA Provenance v1,
// in a DSSE envelope.
//
// Statement records a Build — the subjects (artifact names with their
// sha256 digests), the external parameters (build files and variables, with
// sensitive values redacted by the caller), the internal parameters (the
// step's cache key preimage), the resolved dependencies by digest, the
// builder id and imsbuild's version — using the in-toto attestation Go
// bindings and their validators. Its JSON is canonical (sorted keys,
// compact), and run metadata is optional, so the same build gives the same
// statement bytes.
//
// Sign wraps the statement in a DSSE envelope (go-securesystemslib/dsse)
// signed with an ed25519 or ECDSA P-256 key, read by ParsePrivateKey from
// PKCS#8 or SEC 1 PEM or from cosign's encrypted key file
// (cosign generate-key-pair). The signature encodings are sigstore's, so the
// real cosign accepts the envelope:
//
//	cosign verify-blob-attestation --key cosign.pub --insecure-ignore-tlog \
//	  --type slsaprovenance1 --signature provenance.intoto.jsonl rootfs
//
// Verify checks, in this order and trusting nothing in the payload before
// the first check passes: that a signature verifies with the public key
// (else ErrSignature: a wrong key or a changed payload), that the statement
// is an in-toto v1 SLSA v1 provenance, and only then that every given
// artifact (at least one) is a subject with the artifact's sha256 digest
// (else ErrSubject: a changed or unknown artifact). It returns the statement, which Verified.Check holds
// against a Policy: the accepted builder ids and the expected digests of
// resolved dependencies (every violation reported at once, ErrPolicy).
// Envelopes are bounded in size and signature count.
//
// The package knows nothing of the engine: it works on digests, files and
// keys, so any step or publisher can call it.
package provenance
