package main

import (
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hashicorp/hcl/v2"

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
// never appear in a message.
func loadSigner(cfg *spec.Config, flagPath string, environ []string) (crypto.Signer, error) {
	path, rng := flagPath, (*hcl.Range)(nil)
	if path == "" {
		if cfg.Settings.Signing.Key == "" {
			return nil, nil
		}
		path, rng = cfg.Settings.Signing.Key, &cfg.Settings.Signing.KeyRange
	}
	signer, summary, detail := readSigner(path, environ)
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
// diagnostic's summary and detail instead.
func readSigner(path string, environ []string) (crypto.Signer, string, string) {
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
	return signer, "", ""
}
