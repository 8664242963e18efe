package steps

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/imsbuild/imsbuild/builders/kiwi"
	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/pkgproxy"
	"github.com/imsbuild/imsbuild/lockfile"
	"github.com/imsbuild/imsbuild/sbom"
)

// PackagesOutput names, in a Prepare step's outputs, the packages the
// prepare resolved: a lockfile.Recipe as JSON (application/json), which
// imsbuild lock copies into the lock file, so that a cached prepare gives
// its package list without building again.
const PackagesOutput = "packages"

// packagesMediaType is the media type of PackagesOutput.
const packagesMediaType = "application/vnd.imsbuild.packages+json"

// maxPackagesOutput bounds the package list read back from the store.
const maxPackagesOutput = lockfile.MaxFileSize

// ErrLockMismatch marks a prepare whose packages differ from the lock.
var ErrLockMismatch = errors.New("the packages differ from the lock")

// LockMismatchError is a --locked prepare whose resolution differs from
// the lock, one line per package.
type LockMismatchError struct {
	Recipe string
	Lines  []string
}

func (e *LockMismatchError) Error() string {
	return fmt.Sprintf("recipe %s: %v (imsbuild lock --update refreshes the lock):\n  %s", e.Recipe, ErrLockMismatch, strings.Join(e.Lines, "\n  "))
}

func (e *LockMismatchError) Unwrap() error { return ErrLockMismatch }

// lockMismatch returns the LockMismatchError of recipe, written to log
// too: the console shows a failure's first line and its log's tail.
func lockMismatch(log io.Writer, recipe string, lines []string) error {
	err := &LockMismatchError{Recipe: recipe, Lines: lines}
	fmt.Fprintln(log, err)
	return err
}

// fileRecord is a package file a prepare got: its URL path and sha256.
type fileRecord struct {
	path, sha256 string
}

// packageRecorder keeps what a prepare's proxy session served and, under a
// lock, what it refused.
type packageRecorder struct {
	lock *lockfile.Recipe // nil: nothing is refused

	mu      sync.Mutex
	files   map[string]fileRecord // name_version_arch (version without epoch) → file
	refused []string
}

func newPackageRecorder(lock *lockfile.Recipe) *packageRecorder {
	return &packageRecorder{lock: lock, files: map[string]fileRecord{}}
}

// hooks returns the proxy session hooks that feed r.
func (r *packageRecorder) hooks() pkgproxy.Hooks {
	h := pkgproxy.Hooks{Served: r.served}
	if r.lock != nil {
		h.Check = r.check
	}
	return h
}

func (r *packageRecorder) served(rawURL string, d cache.Digest, _ int64) {
	p := urlPath(rawURL)
	name, version, arch, ok := lockfile.ParseFileName(p)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.files[fileKey(name, version, arch)] = fileRecord{path: p, sha256: d.Hex()}
}

func (r *packageRecorder) check(rawURL string, d cache.Digest) error {
	hex := ""
	if d != "" {
		hex = d.Hex()
	}
	err := r.lock.CheckFile(urlPath(rawURL), hex)
	if err != nil {
		r.mu.Lock()
		defer r.mu.Unlock()
		msg := err.Error()
		for _, m := range r.refused {
			if m == msg {
				return err // apt retries; say it once
			}
		}
		r.refused = append(r.refused, msg)
	}
	return err
}

// refusals returns what the session refused, in order.
func (r *packageRecorder) refusals() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.refused...)
}

func (r *packageRecorder) file(name, version, arch string) (fileRecord, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f, ok := r.files[fileKey(name, version, arch)]
	return f, ok
}

func fileKey(name, version, arch string) string {
	if i := strings.IndexByte(version, ':'); i >= 0 {
		version = version[i+1:]
	}
	return name + "_" + version + "_" + arch
}

// urlPath is the path of a canonical package URL, as sent.
func urlPath(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	return u.EscapedPath()
}

// indexFunc returns the index entries (kiwi.AptIndex) of the packages
// want accepts, for the arches the root has.
type indexFunc func(ctx context.Context, arches []string, want func(key string) bool) map[string]kiwi.IndexEntry

// resolvePackages lists the packages installed in root (dpkg status, rpm
// database) with the sha256 and URL path of each one's package file: the
// file the proxy session served, else the one the repositories' indexes
// list for that version (index, nil for none), else a .deb apt kept in
// kiwi's shared cache (sharedCache/apt-get/archives, hashed here; no
// path). A package found in none of them is locked by version only.
func resolvePackages(ctx context.Context, root, sharedCache string, rec *packageRecorder, repos map[string]string, index indexFunc) (*lockfile.Recipe, error) {
	inv, err := sbom.Scan(ctx, root, sbom.WithoutLicenses())
	if err != nil {
		return nil, fmt.Errorf("list packages: %w", err)
	}
	pkgs := make([]lockfile.Package, len(inv.Packages))
	for i, p := range inv.Packages {
		pkgs[i] = lockfile.Package{Name: p.Name, Version: p.Version, Arch: p.Arch}
		if p.Type == sbom.TypeRPM {
			pkgs[i].Version = kiwi.RPMVersion(p.Epoch, p.Version, p.Release)
		}
	}
	var entries map[string]kiwi.IndexEntry
	if index != nil {
		installed := map[string]bool{}
		var arches []string // of dpkg, for apt indexes
		for i, p := range inv.Packages {
			installed[kiwi.IndexKey(pkgs[i].Name, pkgs[i].Version, pkgs[i].Arch)] = true
			if p.Type == sbom.TypeDeb && p.Arch != "all" && !slices.Contains(arches, p.Arch) {
				arches = append(arches, p.Arch)
			}
		}
		if len(installed) > 0 {
			entries = index(ctx, arches, func(k string) bool { return installed[k] })
		}
	}
	archives := filepath.Join(sharedCache, "apt-get", "archives")
	out := &lockfile.Recipe{Repositories: repos, Packages: []lockfile.Package{}}
	for i, p := range inv.Packages {
		lp := pkgs[i]
		if f, ok := rec.file(lp.Name, lp.Version, lp.Arch); ok {
			lp.SHA256, lp.Path = f.sha256, f.path
		} else if e, ok := entries[kiwi.IndexKey(lp.Name, lp.Version, lp.Arch)]; ok && withFile(lp, e).Validate() == nil {
			lp = withFile(lp, e) // an index entry the lock cannot hold is ignored
		} else if p.Type == sbom.TypeDeb && sharedCache != "" {
			// apt names its archives name_version_arch.deb, ":" as %3a.
			name := p.Name + "_" + strings.ReplaceAll(p.Version, ":", "%3a") + "_" + p.Arch + ".deb"
			if sum, err := fileSHA256(filepath.Join(archives, name)); err == nil {
				lp.SHA256 = sum
			} else if !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("list packages: %w", err)
			}
		}
		out.Packages = append(out.Packages, lp)
	}
	out.Sort()
	// Two packages of one name and arch cannot be installed; a package
	// database that says so is refused rather than locked.
	if err := out.Validate(); err != nil {
		return nil, fmt.Errorf("list packages of the prepared root: %w", err)
	}
	return out, nil
}

func withFile(p lockfile.Package, e kiwi.IndexEntry) lockfile.Package {
	p.SHA256, p.Path = e.SHA256, e.Path
	return p
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// storePackages stores the package list as PackagesOutput.
func storePackages(ctx context.Context, store cache.Store, r *lockfile.Recipe) (cache.Output, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return cache.Output{}, err
	}
	d, n, err := store.Put(ctx, bytes.NewReader(b), "")
	if err != nil {
		return cache.Output{}, fmt.Errorf("store package list: %w", err)
	}
	return cache.Output{Digest: d, Size: n, MediaType: packagesMediaType}, nil
}

// ReadPackages reads the package list of a Prepare step's result, stored
// by the prepare that made it, and validates it as a lock entry.
func ReadPackages(ctx context.Context, store cache.Store, res *cache.ActionResult) (*lockfile.Recipe, error) {
	out, ok := res.Outputs[PackagesOutput]
	if !ok {
		return nil, errors.New("the prepare result has no package list")
	}
	if out.Size > maxPackagesOutput {
		return nil, fmt.Errorf("package list %s: %d bytes, more than %d", out.Digest, out.Size, maxPackagesOutput)
	}
	rc, err := store.Open(ctx, out.Digest)
	if err != nil {
		return nil, fmt.Errorf("package list: %w", err)
	}
	defer rc.Close()
	dec := json.NewDecoder(io.LimitReader(rc, maxPackagesOutput))
	dec.DisallowUnknownFields()
	var r lockfile.Recipe
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("package list %s: %w", out.Digest, err)
	}
	if r.Packages == nil {
		r.Packages = []lockfile.Package{}
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("package list %s: %w", out.Digest, err)
	}
	return &r, nil
}
