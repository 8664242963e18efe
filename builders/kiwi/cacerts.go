package kiwi

import (
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/imsbuild/imsbuild/internal/atomicfile"
)

// ErrRPMCACerts reports CA certificates for an RPM-based recipe, which
// InjectCACerts does not handle yet.
var ErrRPMCACerts = errors.New("ca certificates for rpm recipes not supported yet")

// caCertDir is where Debian's update-ca-certificates picks up local CAs.
const caCertDir = "usr/local/share/ca-certificates"

// caHook is appended to config.sh: kiwi-ng runs config.sh in the image root
// after the packages and the root/ overlay are installed.
const caHook = `
# imsbuild: trust the site CA certificates (image ca_certificates).
if command -v update-ca-certificates >/dev/null 2>&1; then
    update-ca-certificates
fi
`

// InjectCACerts makes the image described in descDir trust each PEM CA
// certificate, the imsbuild counterpart of the IMS build-ca-rpm step.
//
// For apt (Debian) recipes, certificate N (from 1) is written to the
// description's overlay as root/usr/local/share/ca-certificates/imsbuild-N.crt
// and a call to update-ca-certificates (guarded by command -v) is appended to
// config.sh, which is created when missing. kiwi-ng copies root/ into the
// image and runs config.sh after installing the packages, so the final image
// and everything config.sh runs after the hook trust the certificates; the
// recipe must install ca-certificates. Package downloads are made by the
// build host (debootstrap) and by apt in the image root before the overlay
// exists, so a site mirror behind the CA must be trusted by the host.
//
// RPM recipes (zypper, dnf, rpm-md repositories) give an error wrapping
// ErrRPMCACerts for now. They will work as IMS does: build a small noarch RPM
// that installs the PEMs under /etc/pki/trust/anchors (SUSE) or
// /etc/pki/ca-trust/source/anchors (RHEL) and runs update-ca-certificates or
// update-ca-trust in %post, put it in a local rpm-md repository added to the
// description, and add the package to the bootstrap package list so that it
// is trusted during the installation too.
//
// No certificates is a no-op. Each PEM must hold at least one CERTIFICATE
// block.
func InjectCACerts(descDir string, pems []string) error {
	if len(pems) == 0 {
		return nil
	}
	for i, p := range pems {
		if err := checkPEM(p); err != nil {
			return fmt.Errorf("inject ca certificate %d: %w", i+1, err)
		}
	}
	d, file, err := readDescription(descDir)
	if err != nil {
		return fmt.Errorf("inject ca certificates: %w", err)
	}
	if d.isRPM() {
		return fmt.Errorf("inject ca certificates into %s: %w", file, ErrRPMCACerts)
	}
	dir := filepath.Join(descDir, "root", caCertDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("inject ca certificates: %w", err)
	}
	for i, p := range pems {
		name := filepath.Join(dir, fmt.Sprintf("imsbuild-%d.crt", i+1))
		if !strings.HasSuffix(p, "\n") {
			p += "\n"
		}
		if err := atomicfile.WriteFile(name, []byte(p), 0o644); err != nil {
			return fmt.Errorf("inject ca certificates: %w", err)
		}
	}
	if err := appendHook(filepath.Join(descDir, "config.sh")); err != nil {
		return fmt.Errorf("inject ca certificates: %w", err)
	}
	return nil
}

// checkPEM reports whether text holds a PEM CERTIFICATE block.
func checkPEM(text string) error {
	rest := []byte(text)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return errors.New("no PEM CERTIFICATE block")
		}
		if b.Type == "CERTIFICATE" {
			return nil
		}
	}
}

// appendHook appends caHook to the script at path, creating it (executable,
// with a shebang) when missing.
func appendHook(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return atomicfile.WriteFile(path, []byte("#!/bin/bash\n"+caHook), 0o755)
	case err != nil:
		return err
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s: not a regular file", path)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	// The script may not end with a newline.
	if _, err := f.WriteString("\n" + caHook); err != nil {
		f.Close()
		return fmt.Errorf("append %s: %w", path, err)
	}
	return f.Close()
}
