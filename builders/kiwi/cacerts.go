package kiwi

import (
	"archive/tar"
	"encoding/pem"
	"encoding/xml"
	"errors"
	"fmt"
	"github.com/klauspost/compress/gzip"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/imsbuild/imsbuild/internal/atomicfile"
)

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
// certificate, during package installation and in the final image: the
// imsbuild counterpart of the IMS build-ca-rpm step.
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
// For RPM recipes (zypper, dnf, yum or microdnf, or rpm-md repositories) it
// does what IMS does: it builds a noarch RPM, imsbuild-ca-certificates, that
// installs certificate N as imsbuild-N.pem in /etc/pki/trust/anchors (SUSE)
// and /etc/pki/ca-trust/source/anchors (RHEL) and rebuilds the trust store
// with update-ca-certificates or update-ca-trust at the end of the
// transaction (%posttrans) and on removal, never failing it. The RPM goes
// into a local rpm-md repository in the description, imsbuild-ca-repo/ (its
// metadata made by createrepo_c, which must be installed: Debian package
// createrepo-c), added to the description as this://imsbuild-ca-repo, so
// that it resolves wherever the description is mounted, and not included in
// the image's repositories. The package joins the bootstrap packages, so the
// image packages, installed from inside the root, are fetched trusting the
// certificates. The release of the RPM is a digest of the certificates; the
// same certificates give the same bytes.
//
// No certificates is a no-op. Each PEM must hold at least one CERTIFICATE
// block. Injecting the same certificates twice changes nothing.
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
		if err := injectCARPM(descDir, file, pems); err != nil {
			return fmt.Errorf("inject ca certificates: %w", err)
		}
		return nil
	}
	if err := writeCAArchive(filepath.Join(descDir, caArchive), pems, hostBundle); err != nil {
		return fmt.Errorf("inject ca certificates: %w", err)
	}
	if err := addBootstrap(file, `<archive name="`+caArchive+`"/>`); err != nil {
		return fmt.Errorf("inject ca certificates: %w", err)
	}
	if err := appendHook(filepath.Join(descDir, "config.sh")); err != nil {
		return fmt.Errorf("inject ca certificates: %w", err)
	}
	return nil
}

// injectCARPM writes the CA repository into descDir and adds it and the
// package to the description file.
func injectCARPM(descDir, file string, pems []string) error {
	if err := writeCARepo(filepath.Join(descDir, caRepo), pems); err != nil {
		return err
	}
	repo := `<repository type="rpm-md" alias="imsbuild-ca" imageinclude="false">` + "\n" +
		`        <source path="this://` + caRepo + `"/>` + "\n" +
		`    </repository>`
	if err := addRepoElement(file, repo); err != nil {
		return err
	}
	return addBootstrap(file, `<package name="`+caRPMName+`"/>`)
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

// addBootstrap adds entry (an <archive> or <package> element) to the first
// bootstrap packages section of the description file, adding the section
// when there is none, unless the file has entry already. Commented-out
// sections do not count.
func addBootstrap(file, entry string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	x := string(b)
	if strings.Contains(x, entry) {
		return nil
	}
	end, err := bootstrapTagEnd(x)
	switch {
	case err != nil:
		return fmt.Errorf("parse %s: %w", file, err)
	case end < 0:
		x, err = insertBeforeEnd(file, x, `<packages type="bootstrap">`+"\n        "+entry+"\n    </packages>")
		if err != nil {
			return err
		}
	case strings.HasSuffix(x[:end], "/>"): // <packages type="bootstrap"/>
		x = x[:end-2] + ">\n        " + entry + "\n    </packages>" + x[end:]
	default:
		x = x[:end] + "\n        " + entry + x[end:]
	}
	return atomicfile.WriteFile(file, []byte(x), 0o644)
}

// bootstrapTagEnd returns the byte offset just after the start tag of the
// first <packages type="bootstrap"> child of the description's root
// element, or -1 when there is none.
func bootstrapTagEnd(x string) (int, error) {
	dec := xml.NewDecoder(strings.NewReader(x))
	depth := 0
	for {
		tok, err := dec.RawToken()
		if err == io.EOF {
			return -1, nil
		}
		if err != nil {
			return 0, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 2 && t.Name.Local == "packages" && xmlAttr(t, "type") == "bootstrap" {
				return int(dec.InputOffset()), nil
			}
		case xml.EndElement:
			depth--
		}
	}
}

func xmlAttr(e xml.StartElement, name string) string {
	for _, a := range e.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// addRepoElement adds the <repository> element repo to the description file,
// at its end, unless the file has it already.
func addRepoElement(file, repo string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	x := string(b)
	if strings.Contains(x, repo) {
		return nil
	}
	if x, err = insertBeforeEnd(file, x, repo); err != nil {
		return err
	}
	return atomicfile.WriteFile(file, []byte(x), 0o644)
}

// insertBeforeEnd inserts element, indented, before the </image> end tag of
// the description x read from file.
func insertBeforeEnd(file, x, element string) (string, error) {
	end := strings.LastIndex(x, "</image>")
	if end < 0 {
		return "", fmt.Errorf("%s: no </image> end tag", file)
	}
	return x[:end] + "    " + element + "\n" + x[end:], nil
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
