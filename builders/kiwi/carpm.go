package kiwi

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/rpmpack"
)

// The CA certificate RPM of RPM recipes, the counterpart of the package IMS
// makes in its build-ca-rpm step.
const (
	caRPMName    = "imsbuild-ca-certificates"
	caRPMVersion = "1.0"
	// caRepo is the local rpm-md repository, in the description directory,
	// that holds the RPM.
	caRepo = "imsbuild-ca-repo"
)

// caRPMTime is the build time and file mtime of every CA RPM, so that the
// same certificates always give the same bytes.
var caRPMTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Where the RPM puts certificate N: SUSE's update-ca-certificates and RHEL's
// update-ca-trust read one directory each, and the RPM serves both.
var caAnchorDirs = []string{
	"/etc/pki/trust/anchors",           // SUSE
	"/etc/pki/ca-trust/source/anchors", // RHEL, Fedora
}

// caRPMScript is the %posttrans and %postun scriptlet: it rebuilds the trust
// store with whichever tool the root has, and never fails the transaction.
// %posttrans rather than %post: during a bootstrap install the RPM and
// ca-certificates share a transaction in no set order, and only after the
// transaction is update-ca-certificates (or update-ca-trust) surely there.
const caRPMScript = `if command -v update-ca-certificates >/dev/null 2>&1; then
    update-ca-certificates || :
elif command -v update-ca-trust >/dev/null 2>&1; then
    update-ca-trust extract || :
fi
exit 0
`

// caRPM builds the CA certificate RPM of pems: a noarch package named
// imsbuild-ca-certificates, version 1.0, whose release is the first 12 hex
// digits of a SHA-256 of the PEMs (so different certificate lists give
// different packages), holding certificate N (from 1) as imsbuild-N.pem in
// each of caAnchorDirs, with caRPMScript as %posttrans and %postun. The same
// pems give the same bytes. It returns the package's file name and content.
func caRPM(pems []string) (string, []byte, error) {
	h := sha256.New()
	for _, p := range pems {
		fmt.Fprintf(h, "%d\n%s", len(p), p)
	}
	r, err := rpmpack.NewRPM(rpmpack.RPMMetaData{
		Name:        caRPMName,
		Summary:     "Site CA certificates trusted by imsbuild images",
		Description: "The ca_certificates of an imsbuild image, as trust anchors for update-ca-certificates (SUSE) and update-ca-trust (RHEL).",
		Version:     caRPMVersion,
		Release:     hex.EncodeToString(h.Sum(nil))[:12],
		Arch:        "noarch",
		Vendor:      "imsbuild",
		Licence:     "Public Domain",
		BuildHost:   "imsbuild",
		BuildTime:   caRPMTime,
		Compressor:  "gzip",
	})
	if err != nil {
		return "", nil, fmt.Errorf("ca rpm: %w", err)
	}
	for i, p := range pems {
		if !strings.HasSuffix(p, "\n") {
			p += "\n"
		}
		for _, dir := range caAnchorDirs {
			r.AddFile(rpmpack.RPMFile{
				Name:  fmt.Sprintf("%s/imsbuild-%d.pem", dir, i+1),
				Body:  []byte(p),
				Mode:  0o644,
				Owner: "root",
				Group: "root",
				MTime: uint32(caRPMTime.Unix()),
			})
		}
	}
	r.AddPosttrans(caRPMScript)
	r.AddPostun(caRPMScript)
	var b bytes.Buffer
	if err := r.Write(&b); err != nil {
		return "", nil, fmt.Errorf("ca rpm: %w", err)
	}
	return fmt.Sprintf("%s-%s.noarch.rpm", r.Name, r.FullVersion()), b.Bytes(), nil
}

// writeCARepo makes dir (replacing it) an rpm-md repository holding only the
// CA certificate RPM of pems, with metadata by createrepo_c, which zypper
// and dnf both read. The metadata is gzip-compressed for old zypper
// versions, and its timestamps are fixed.
func writeCARepo(dir string, pems []string) error {
	createrepo, err := exec.LookPath("createrepo_c")
	if err != nil {
		return fmt.Errorf("ca repository needs createrepo_c (Debian package createrepo-c): %w", err)
	}
	name, data, err := caRPM(pems)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	rpm := filepath.Join(tmp, name)
	if err := os.WriteFile(rpm, data, 0o644); err != nil {
		return err
	}
	// createrepo_c records the package file's mtime.
	if err := os.Chtimes(rpm, caRPMTime, caRPMTime); err != nil {
		return err
	}
	cmd := exec.Command(createrepo, "--quiet", "--no-database", "--general-compress-type=gz",
		fmt.Sprintf("--revision=%d", caRPMTime.Unix()), "--set-timestamp-to-revision", tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("createrepo_c %s: %w: %s", dir, err, bytes.TrimSpace(out))
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return os.Rename(tmp, dir)
}
