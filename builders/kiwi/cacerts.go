package kiwi

import (
	"archive/tar"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/klauspost/compress/gzip"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/imsbuild/imsbuild/internal/atomicfile"
)

// ErrRPMCACerts reports CA certificates for an RPM-based recipe, which
// InjectCACerts does not handle yet.
var ErrRPMCACerts = errors.New("ca certificates for rpm recipes not supported yet")

// caCertDir is where Debian's update-ca-certificates picks up local CAs.
const caCertDir = "usr/local/share/ca-certificates"

// caArchive is the bootstrap archive that carries the certificates into the
// root before the image packages are installed.
const caArchive = "imsbuild-ca.tar.gz"

// During package installation apt trusts buildBundle (the build host's
// roots plus the site CAs) through aptCAConf; config.sh removes both.
const (
	buildBundle = "usr/local/share/imsbuild/build-ca-bundle.crt"
	aptCAConf   = "etc/apt/apt.conf.d/99imsbuild-build-ca"
	hostBundle  = "/etc/ssl/certs/ca-certificates.crt"
)

// caHook is appended to config.sh: kiwi-ng runs config.sh in the image root
// after the packages and the root/ overlay are installed.
const caHook = `
# imsbuild: trust the site CA certificates (image ca_certificates) for good,
# and drop the bundle apt used while installing packages.
if command -v update-ca-certificates >/dev/null 2>&1; then
    update-ca-certificates
fi
rm -f /` + aptCAConf + ` /` + buildBundle + `
rmdir /usr/local/share/imsbuild 2>/dev/null || true
`

// InjectCACerts makes the image described in descDir trust each PEM CA
// certificate, the imsbuild counterpart of the IMS build-ca-rpm step.
//
// For apt (Debian) recipes the certificates travel in a bootstrap archive
// (imsbuild-ca.tar.gz, listed in the description's bootstrap packages
// section): kiwi-ng unpacks it into the root after the bootstrap packages and
// before it installs the image packages. It holds certificate N (from 1) as
// usr/local/share/ca-certificates/imsbuild-N.crt, and, for apt while it
// installs packages, a bundle of the build host's roots plus the certificates
// with an apt.conf.d entry pointing Acquire::https::CAInfo at it, so image
// packages can come from an HTTPS mirror signed by the site CA. config.sh
// (created when missing) then runs update-ca-certificates, which puts the
// certificates into the final trust store, and removes the build-time bundle
// and apt entry. The recipe must install ca-certificates. debootstrap runs
// on the build host, so a bootstrap mirror behind the CA must be trusted by
// the host.
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
	if err := writeCAArchive(filepath.Join(descDir, caArchive), pems, hostBundle); err != nil {
		return fmt.Errorf("inject ca certificates: %w", err)
	}
	if err := addBootstrapArchive(file, caArchive); err != nil {
		return fmt.Errorf("inject ca certificates: %w", err)
	}
	if err := appendHook(filepath.Join(descDir, "config.sh")); err != nil {
		return fmt.Errorf("inject ca certificates: %w", err)
	}
	return nil
}

// writeCAArchive writes the bootstrap archive: the certificates where
// update-ca-certificates finds them, and, for apt during the build, a bundle
// of the host's roots (when the host has any) plus the certificates.
func writeCAArchive(path string, pems []string, hostRoots string) error {
	var bundle strings.Builder
	if b, err := os.ReadFile(hostRoots); err == nil {
		bundle.Write(b)
	}
	files := []struct {
		name string
		data string
	}{}
	for i, p := range pems {
		if !strings.HasSuffix(p, "\n") {
			p += "\n"
		}
		files = append(files, struct{ name, data string }{fmt.Sprintf("%s/imsbuild-%d.crt", caCertDir, i+1), p})
		bundle.WriteString(p)
	}
	files = append(files,
		struct{ name, data string }{buildBundle, bundle.String()},
		struct{ name, data string }{aptCAConf, `Acquire::https::CAInfo "/` + buildBundle + `";` + "\n"})
	f, err := atomicfile.Create(path, 0o644)
	if err != nil {
		return err
	}
	defer f.Abort()
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	dirs := map[string]bool{}
	for _, fl := range files {
		for d := filepath.Dir(fl.name); d != "."; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	for _, d := range sortedKeys(dirs) {
		if err := tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
			return err
		}
	}
	for _, fl := range files {
		if err := tw.WriteHeader(&tar.Header{Name: fl.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(fl.data))}); err != nil {
			return err
		}
		if _, err := io.WriteString(tw, fl.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return f.Commit()
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// bootstrapSection matches the opening tag of the bootstrap packages section.
var bootstrapSection = regexp.MustCompile(`<packages\s[^>]*type\s*=\s*["']bootstrap["'][^>]*>`)

// addBootstrapArchive lists archive in the description's bootstrap packages
// section (adding the section when there is none): kiwi unpacks bootstrap
// archives into the root after the bootstrap packages and before it installs
// the image packages.
func addBootstrapArchive(file, archive string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	x := string(b)
	entry := `<archive name="` + archive + `"/>`
	if strings.Contains(x, entry) {
		return nil
	}
	if loc := bootstrapSection.FindStringIndex(x); loc != nil {
		x = x[:loc[1]] + "\n        " + entry + x[loc[1]:]
	} else {
		end := strings.LastIndex(x, "</image>")
		if end < 0 {
			return fmt.Errorf("%s: no </image> end tag", file)
		}
		x = x[:end] + `    <packages type="bootstrap">` + "\n        " + entry + "\n    </packages>\n" + x[end:]
	}
	return atomicfile.WriteFile(file, []byte(x), 0o644)
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
