package provenance

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
)

// PEM block types of private keys that ParsePrivateKey reads. cosign's
// generate-key-pair writes the encrypted ones (scrypt + secretbox around
// PKCS#8); "ENCRYPTED COSIGN PRIVATE KEY" is its older name.
const (
	pemPKCS8    = "PRIVATE KEY"
	pemSEC1     = "EC PRIVATE KEY"
	pemSigstore = "ENCRYPTED SIGSTORE PRIVATE KEY"
	pemCosign   = "ENCRYPTED COSIGN PRIVATE KEY"
	pemPublic   = "PUBLIC KEY"
	maxKeyFile  = 64 << 10
)

// ErrPassword is returned for an encrypted key without a password or with a
// wrong one.
var ErrPassword = errors.New("wrong or missing password for the encrypted private key")

// ParsePrivateKey reads an ed25519 or ECDSA P-256 private key from PEM:
// PKCS#8 ("PRIVATE KEY"), SEC 1 ("EC PRIVATE KEY") or cosign's encrypted
// format, decrypted with password (ignored for unencrypted keys). Other key
// types and curves are errors: verifiers (and cosign) expect these two.
func ParsePrivateKey(pemBytes, password []byte) (crypto.Signer, error) {
	if len(pemBytes) > maxKeyFile {
		return nil, fmt.Errorf("parse private key: larger than %d bytes", maxKeyFile)
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, fmt.Errorf("parse private key: no PEM block")
	}
	der := block.Bytes
	switch block.Type {
	case pemSigstore, pemCosign:
		if len(password) == 0 {
			return nil, fmt.Errorf("parse private key: %w", ErrPassword)
		}
		var err error
		if der, err = encrypted.Decrypt(block.Bytes, password); err != nil {
			return nil, fmt.Errorf("parse private key: %w", ErrPassword)
		}
		fallthrough
	case pemPKCS8:
		k, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			return nil, fmt.Errorf("parse private key: %w", err)
		}
		return checkSigner(k)
	case pemSEC1:
		k, err := x509.ParseECPrivateKey(der)
		if err != nil {
			return nil, fmt.Errorf("parse private key: %w", err)
		}
		return checkSigner(k)
	default:
		return nil, fmt.Errorf("parse private key: unsupported PEM type %q", block.Type)
	}
}

func checkSigner(k any) (crypto.Signer, error) {
	switch k := k.(type) {
	case ed25519.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("parse private key: ECDSA curve %s, want P-256", k.Curve.Params().Name)
		}
		return k, nil
	default:
		return nil, fmt.Errorf("parse private key: %T, want ed25519 or ECDSA P-256", k)
	}
}

// ParsePublicKey reads an ed25519 or ECDSA P-256 public key from a PKIX
// "PUBLIC KEY" PEM block (cosign's cosign.pub).
func ParsePublicKey(pemBytes []byte) (crypto.PublicKey, error) {
	if len(pemBytes) > maxKeyFile {
		return nil, fmt.Errorf("parse public key: larger than %d bytes", maxKeyFile)
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != pemPublic {
		return nil, fmt.Errorf("parse public key: no %q PEM block", pemPublic)
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	return checkPublic(k)
}

func checkPublic(k any) (crypto.PublicKey, error) {
	switch k := k.(type) {
	case ed25519.PublicKey:
		return k, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("public key: ECDSA curve %s, want P-256", k.Curve.Params().Name)
		}
		return k, nil
	default:
		return nil, fmt.Errorf("public key: %T, want ed25519 or ECDSA P-256", k)
	}
}

// MarshalPublicKey encodes pub as a PKIX "PUBLIC KEY" PEM block, the form
// cosign --key reads.
func MarshalPublicKey(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPublic, Bytes: der}), nil
}
