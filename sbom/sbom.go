package sbom

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
)

// Package types, as in package URLs.
const (
	TypeDeb = "deb"
	TypeRPM = "rpm"
)

// A Package is one installed package of an image.
type Package struct {
	Type    string // TypeDeb or TypeRPM
	Name    string
	Epoch   string // rpm only; a deb's epoch is part of Version ("1:2.36-9")
	Version string
	Release string // rpm only
	Arch    string
	Source  string // source package (deb) or source rpm file name (rpm)
	// Maintainer is a deb's Maintainer (a person), Supplier an rpm's Vendor
	// (an organization).
	Maintainer string
	Supplier   string
	Homepage   string
	// License is what the package database or the deb's machine-readable
	// copyright file declares: an SPDX expression or free text (older rpm
	// "GPLv2+"). The SPDX output keeps only valid SPDX expressions.
	License string
	// Checksums of the package file (.deb or .rpm), algorithm ("sha256") to
	// lowercase hex. Package databases do not record them; a caller that
	// knows them (a package lock, a repository index) fills them in.
	Checksums map[string]string
}

// FullVersion is the version as the package manager prints it: a deb's
// Version, an rpm's [epoch:]version-release.
func (p Package) FullVersion() string {
	if p.Type != TypeRPM {
		return p.Version
	}
	v := p.Version
	if p.Release != "" {
		v += "-" + p.Release
	}
	if p.Epoch != "" && p.Epoch != "0" {
		v = p.Epoch + ":" + v
	}
	return v
}

// Distro identifies the image's distribution from os-release.
type Distro struct {
	ID        string // "debian", "sles", "fedora"
	VersionID string // "12", "15.5"
}

// Inventory is what Scan found in an image root.
type Inventory struct {
	Distro   Distro
	Packages []Package // sorted by type, name, arch, version
}

// ScanOption configures Scan.
type ScanOption func(*scanOptions)

type scanOptions struct{ licenses bool }

// WithoutLicenses skips reading the debs' copyright files (the largest
// part of a scan): every deb's License stays empty.
func WithoutLicenses() ScanOption { return func(o *scanOptions) { o.licenses = false } }

// Scan reads the package databases of the image root directory: dpkg's
// status file and the rpm database (sqlite, ndb or Berkeley DB). An image
// with neither has no packages, which is not an error (a busybox image).
// Every file is opened through an os.Root, so symlinks in the image cannot
// make Scan read host files.
func Scan(ctx context.Context, root string, opts ...ScanOption) (*Inventory, error) {
	o := scanOptions{licenses: true}
	for _, opt := range opts {
		opt(&o)
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("sbom: %w", err)
	}
	defer r.Close()
	inv := &Inventory{Distro: readOSRelease(r)}

	debs, err := scanDpkg(ctx, r, o)
	if err != nil {
		return nil, fmt.Errorf("sbom %s: %w", root, err)
	}
	inv.Packages = append(inv.Packages, debs...)

	f, name, err := findRPMDB(r)
	if err != nil {
		return nil, fmt.Errorf("sbom %s: %w", root, err)
	}
	if f != nil {
		rpms, err := readRPMDB(f, name)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("sbom %s: %w", root, err)
		}
		inv.Packages = append(inv.Packages, rpms...)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sortPackages(inv.Packages)
	return inv, nil
}

const dpkgStatus = "var/lib/dpkg/status"

func scanDpkg(ctx context.Context, r *os.Root, o scanOptions) ([]Package, error) {
	f, err := openRegular(r, dpkgStatus)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dpkgStatus, err)
	}
	defer f.Close()
	pkgs, err := ParseDpkgStatus(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dpkgStatus, err)
	}
	if !o.licenses {
		return pkgs, nil
	}
	// Opening the doc directory once saves four of the five confined
	// lookups per copyright file.
	doc, err := r.OpenRoot(docDir)
	if err != nil {
		return pkgs, nil // no documentation: no licenses
	}
	defer doc.Close()
	buf, memo := make([]byte, 0, 64<<10), map[string]string{}
	for i := range pkgs {
		if i%64 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		pkgs[i].License = debLicense(doc, pkgs[i].Name, &buf, memo)
	}
	return pkgs, nil
}

// readOSRelease reads ID and VERSION_ID of etc/os-release (or its
// usr/lib fallback); an image without one has a zero Distro.
func readOSRelease(r *os.Root) Distro {
	for _, p := range []string{"etc/os-release", "usr/lib/os-release"} {
		f, err := openRegular(r, p)
		if err != nil {
			continue
		}
		d := parseOSRelease(io.LimitReader(f, 64<<10))
		f.Close()
		return d
	}
	return Distro{}
}

func parseOSRelease(r io.Reader) Distro {
	var d Distro
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		v = strings.Trim(strings.TrimSpace(v), `"'`)
		// Both end up in package URLs: keep them to the characters
		// os-release allows for ID and VERSION_ID.
		if !osReleaseValue(v) {
			continue
		}
		switch k {
		case "ID":
			d.ID = v
		case "VERSION_ID":
			d.VersionID = v
		}
	}
	return d
}

func osReleaseValue(v string) bool {
	if v == "" || len(v) > 64 {
		return false
	}
	for _, c := range v {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func sortPackages(p []Package) {
	slices.SortFunc(p, func(a, b Package) int {
		for _, c := range [][2]string{{a.Type, b.Type}, {a.Name, b.Name}, {a.Arch, b.Arch}, {a.FullVersion(), b.FullVersion()}} {
			if n := strings.Compare(c[0], c[1]); n != 0 {
				return n
			}
		}
		return 0
	})
}
