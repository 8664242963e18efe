package main

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/hashicorp/hcl/v2"

	"github.com/imsbuild/imsbuild/internal/atomicfile"
	"github.com/imsbuild/imsbuild/provenance"
	"github.com/imsbuild/imsbuild/spec"
)

// passwordEnv holds the password of an encrypted signing key (one made by
// cosign generate-key-pair), as cosign reads it.
const passwordEnv = "COSIGN_PASSWORD"

// maxKeyFile bounds what is read of a key file (provenance rejects more).
const maxKeyFile = 64 << 10

// loadSigner returns the signing key of a build: --signing-key FILE when
// given, else imsbuild.signing's key, else nil (no provenance). Its
// problems are configuration errors (exit 2): a key from the build file is
// reported as a diagnostic at its key argument. The key and its password
// never appear in a message. stateDir (the cache directory) remembers the
// public keys of encrypted keys (see lazySigner).
func loadSigner(cfg *spec.Config, flagPath string, environ []string, stateDir string) (crypto.Signer, error) {
	path, rng := flagPath, (*hcl.Range)(nil)
	if path == "" {
		if cfg.Settings.Signing.Key == "" {
			return nil, nil
		}
		path, rng = cfg.Settings.Signing.Key, &cfg.Settings.Signing.KeyRange
	}
	signer, summary, detail := readSigner(path, environ, stateDir)
	if summary == "" {
		return signer, nil
	}
	if rng == nil {
		return nil, usageError{fmt.Errorf("--signing-key %s: %s: %s", path, strings.ToLower(summary), detail)}
	}
	diags := hcl.Diagnostics{{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: rng}}
	if err := writeDiagnostics(cfg.Files, diags); err != nil {
		return nil, err
	}
	return nil, reportedError{exitUsage}
}

// readSigner reads and decrypts the key at path; on failure it returns a
// diagnostic's summary and detail instead. With a stateDir, an encrypted key
// whose public key is remembered there is decrypted only when it signs.
func readSigner(path string, environ []string, stateDir string) (crypto.Signer, string, string) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "Cannot read signing key", fmt.Sprintf("%v.", err)
	}
	defer f.Close()
	pem, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, "Cannot read signing key", fmt.Sprintf("%v.", err)
	}
	password := ""
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, passwordEnv+"="); ok {
			password = v
		}
	}
	encrypted := bytes.Contains(pem, []byte("-----BEGIN ENCRYPTED "))
	memo := ""
	if encrypted && stateDir != "" {
		sum := sha256.Sum256(pem)
		memo = filepath.Join(stateDir, "provenance", "keys", hex.EncodeToString(sum[:])+".pub")
		if pub, err := readPublicKeyFile(memo); err == nil && password != "" {
			return &lazySigner{pub: pub, pem: pem, password: []byte(password)}, "", ""
		}
	}
	signer, err := provenance.ParsePrivateKey(pem, []byte(password))
	switch {
	case errors.Is(err, provenance.ErrPassword) && password == "":
		return nil, "Signing key password missing", fmt.Sprintf("%s is an encrypted key (cosign generate-key-pair); set %s to its password.", path, passwordEnv)
	case errors.Is(err, provenance.ErrPassword):
		return nil, "Wrong signing key password", fmt.Sprintf("%s does not decrypt %s.", passwordEnv, path)
	case err != nil && strings.Contains(string(pem), "PUBLIC KEY-----"):
		return nil, "Unsupported signing key", fmt.Sprintf("%s is a public key; signing needs the private key (verify takes the public one).", path)
	case err != nil:
		return nil, "Unsupported signing key", fmt.Sprintf("%s: %v. imsbuild signs with an ed25519 or ECDSA P-256 private key in PEM (PKCS#8 or SEC 1), or a key made by cosign generate-key-pair.", path, err)
	}
	if memo != "" {
		rememberPublicKey(memo, signer.Public())
	}
	return signer, "", ""
}

// An encrypted key (cosign's) costs one scrypt to decrypt: a few hundred
// milliseconds, far more than a no-op build, which reuses the envelopes it
// signed before and needs only the public key. So the public key of an
// encrypted key that decrypted once is remembered in the cache directory,
// by the sha256 of the key file (which tells nothing of the key), and the
// next builds decrypt the key only when they sign something new. Its
// password is then checked at that first signature (a wrong one fails
// that step) rather than before the build.

// lazySigner is an encrypted key whose public key is known, decrypted at
// its first signature.
type lazySigner struct {
	pub           crypto.PublicKey
	pem, password []byte
	once          sync.Once
	key           crypto.Signer
	err           error
}

func (l *lazySigner) Public() crypto.PublicKey { return l.pub }

func (l *lazySigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	l.once.Do(func() {
		l.key, l.err = provenance.ParsePrivateKey(l.pem, l.password)
		l.pem, l.password = nil, nil
		if l.err == nil {
			if pub, ok := l.key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(l.pub) {
				l.err = errors.New("the key is not the one remembered for its file")
			}
		}
	})
	if l.err != nil {
		return nil, fmt.Errorf("signing key: %w (%s)", l.err, passwordEnv)
	}
	return l.key.Sign(rand, digest, opts)
}

func readPublicKeyFile(path string) (crypto.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return provenance.ParsePublicKey(b)
}

// rememberPublicKey writes pub to path; a failure costs only the next
// build's decryption, so it is not an error.
func rememberPublicKey(path string, pub crypto.PublicKey) {
	b, err := provenance.MarshalPublicKey(pub)
	if err != nil {
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
		_ = atomicfile.WriteFile(path, b, 0o600)
	}
}
