package sshenv

import (
	"bytes"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"golang.org/x/crypto/ssh"
)

// MinRSABits is the smallest RSA key size accepted.
const MinRSABits = 2048

// authorizedKeys is the set of keys allowed to log in, by wire encoding.
type authorizedKeys map[string]ssh.PublicKey

// ParseAuthorizedKeys parses authorized_keys lines (an element may hold
// several lines; blank lines and # comments are skipped) and returns the
// keys. It rejects key types other than ed25519 and ECDSA (and their FIDO
// "sk-" forms), RSA keys shorter than [MinRSABits], certificates and lines
// with options, reporting every bad line, and fails when no key is left.
func ParseAuthorizedKeys(lines []string) ([]ssh.PublicKey, error) {
	var keys []ssh.PublicKey
	var errs []error
	n := 0
	for _, text := range lines {
		for line := range strings.SplitSeq(text, "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			n++
			k, err := parseKey(line)
			if err != nil {
				errs = append(errs, fmt.Errorf("sshenv authorized key %d: %w", n, err))
				continue
			}
			keys = append(keys, k)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(keys) == 0 {
		return nil, errors.New("sshenv: no authorized keys")
	}
	return keys, nil
}

// parseKey parses and vets one authorized_keys line.
func parseKey(line string) (ssh.PublicKey, error) {
	k, comment, options, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		for f := range strings.FieldsSeq(line) {
			if f == "ssh-dss" {
				return nil, fmt.Errorf("ssh-dss: key type not accepted (use ed25519, ecdsa, or rsa of at least %d bits)", MinRSABits)
			}
		}
		return nil, fmt.Errorf("%q: %w", abbrev(line), err)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, fmt.Errorf("%q: trailing data", abbrev(line))
	}
	name := k.Type()
	if comment != "" {
		name += " " + comment
	}
	if len(options) > 0 {
		return nil, fmt.Errorf("%s: options (%s) are not supported", name, strings.Join(options, ","))
	}
	switch k.Type() {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoSKED25519,
		ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoSKECDSA256:
		return k, nil
	case ssh.KeyAlgoRSA:
		ck, ok := k.(ssh.CryptoPublicKey)
		if !ok {
			return nil, fmt.Errorf("%s: not an RSA key", name)
		}
		rk, ok := ck.CryptoPublicKey().(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%s: not an RSA key", name)
		}
		if bits := rk.N.BitLen(); bits < MinRSABits {
			return nil, fmt.Errorf("%s: RSA key of %d bits, at least %d needed", name, bits, MinRSABits)
		}
		return k, nil
	}
	if _, ok := k.(*ssh.Certificate); ok {
		return nil, fmt.Errorf("%s: certificates are not supported", name)
	}
	return nil, fmt.Errorf("%s: key type not accepted (use ed25519, ecdsa, or rsa of at least %d bits)", name, MinRSABits)
}

// abbrev shortens a line for an error message.
func abbrev(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// newAuthorizedKeys indexes keys.
func newAuthorizedKeys(keys []ssh.PublicKey) authorizedKeys {
	a := make(authorizedKeys, len(keys))
	for _, k := range keys {
		a[string(k.Marshal())] = k
	}
	return a
}

// User is the only user name the environment lets in: sessions run as root
// in the sandbox, and a client asking for another user would be misled.
const User = "root"

// callback is the ssh.ServerConfig.PublicKeyCallback letting in only a's
// keys, as [User].
func (a authorizedKeys) callback(log *slog.Logger) func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) {
	return func(md ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		fp := ssh.FingerprintSHA256(k)
		if md.User() != User {
			log.Info("user refused", "user", md.User(), "remote", md.RemoteAddr().String(), "key", fp)
			return nil, fmt.Errorf("sshenv: user %q not allowed: log in as %s", md.User(), User)
		}
		if _, ok := a[string(k.Marshal())]; !ok {
			log.Info("key refused", "user", md.User(), "remote", md.RemoteAddr().String(), "key", fp)
			return nil, fmt.Errorf("sshenv: key %s not authorized", fp)
		}
		return &ssh.Permissions{Extensions: map[string]string{"key": fp}}, nil
	}
}
