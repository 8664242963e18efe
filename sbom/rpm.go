package sbom

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"

	rpmdb "github.com/anchore/go-rpmdb/pkg"
	// The sqlite driver (pure Go) go-rpmdb opens rpmdb.sqlite with.
	_ "github.com/glebarez/go-sqlite"
)

// rpmDBs are the rpm database files an image may hold, newest layout first:
// sqlite (rpm ≥ 4.16, Fedora, RHEL 9), ndb (SUSE), Berkeley DB (RHEL ≤ 8,
// SLES 12). /usr/lib/sysimage/rpm is the dbpath of current distributions,
// /var/lib/rpm the classic one (often a symlink to the first).
var rpmDBs = []string{
	"usr/lib/sysimage/rpm/rpmdb.sqlite",
	"usr/lib/sysimage/rpm/Packages.db",
	"usr/lib/sysimage/rpm/Packages",
	"var/lib/rpm/rpmdb.sqlite",
	"var/lib/rpm/Packages.db",
	"var/lib/rpm/Packages",
}

// findRPMDB opens the first rpm database of root; nil without error when
// the image has none. Opening through root keeps a symlink in the image from
// pointing the reader at a host file.
func findRPMDB(root *os.Root) (*os.File, string, error) {
	for _, p := range rpmDBs {
		f, err := openRegular(root, p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("open %s: %w", p, err)
		}
		return f, p, nil
	}
	return nil, "", nil
}

// readRPMDB lists the packages of the rpm database f (opened from root at
// name).
func readRPMDB(f *os.File, name string) (pkgs []Package, err error) {
	// The reader opens paths, not files: the /proc/self/fd name is the
	// already opened, already confined file. The sqlite reader opens it
	// immutable and read-only, so no journal is created beside it.
	path := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	// go-rpmdb parses untrusted binary headers; a malformed one must fail
	// this image's SBOM, not crash the build.
	defer func() {
		if r := recover(); r != nil {
			pkgs, err = nil, fmt.Errorf("read %s: malformed database: %v", name, r)
		}
	}()
	db, err := rpmdb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	defer db.Close()
	list, err := db.ListPackages()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	for _, p := range list {
		// gpg-pubkey entries are imported signing keys, not software.
		if p.Name == "gpg-pubkey" {
			continue
		}
		q := Package{
			Type:     TypeRPM,
			Name:     oneLine(p.Name),
			Version:  oneLine(p.Version),
			Release:  oneLine(p.Release),
			Arch:     oneLine(p.Arch),
			Source:   oneLine(p.SourceRpm),
			Supplier: oneLine(p.Vendor),
			Homepage: oneLine(p.URL),
			License:  oneLine(p.License),
		}
		if p.Epoch != nil {
			q.Epoch = strconv.Itoa(*p.Epoch)
		}
		pkgs = append(pkgs, q)
	}
	return pkgs, nil
}
