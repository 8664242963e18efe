package lockfile

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Name is the lock file's name in a build directory.
const Name = "imsbuild.lock.json"

// Version is the format version Encode writes and Parse accepts.
const Version = 1

// File is a lock: the resolution of each recipe, by recipe name.
type File struct {
	Version int                `json:"version"`
	Recipes map[string]*Recipe `json:"recipes"`
}

// Recipe is what one recipe's kiwi prepare resolved.
type Recipe struct {
	// Repositories maps a repository name to the digest of its metadata
	// (InRelease or Release, repomd.xml), "sha256:<hex>", when resolved.
	Repositories map[string]string `json:"repositories"`
	// Packages is every package installed in the prepared root, sorted by
	// name, arch and version.
	Packages []Package `json:"packages"`
}

// Package is one resolved package. SHA256 and Path are those of its package
// file: the one the prepare's proxy served, or the one its repository's
// index lists for that version. Either may be empty when neither knew it
// (a package of an undeclared repository), which is then locked by what
// is known, at worst its version.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"` // a deb's epoch included ("1:2.36-9"); an rpm's [epoch:]version-release
	Arch    string `json:"arch"`
	SHA256  string `json:"sha256,omitempty"` // hex
	Path    string `json:"path,omitempty"`   // the URL path of the package file
}

// ID is the identity of a package within a recipe: its name and arch
// (multiarch roots hold one package for several arches).
func (p Package) ID() string { return p.Name + ":" + p.Arch }

// String is "name version arch".
func (p Package) String() string { return p.Name + " " + p.Version + " " + p.Arch }

// Parse reads a lock file, validating everything in it (see limits.go).
func Parse(data []byte) (*File, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("lock file: %d bytes, more than %d", len(data), MaxFileSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f File
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("lock file: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("lock file: data after the JSON object")
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

// Validate checks f as Parse does. It reports the first problem, naming
// the recipe and package.
func (f *File) Validate() error {
	if f.Version != Version {
		return fmt.Errorf("lock file: version %d, want %d (written by another imsbuild?)", f.Version, Version)
	}
	if len(f.Recipes) > MaxRecipes {
		return fmt.Errorf("lock file: %d recipes, more than %d", len(f.Recipes), MaxRecipes)
	}
	for name, r := range f.Recipes {
		if !validLabel(name) {
			return fmt.Errorf("lock file: recipe %q: not a recipe name", name)
		}
		if r == nil {
			return fmt.Errorf("lock file: recipe %s: null", name)
		}
		if err := r.Validate(); err != nil {
			return fmt.Errorf("lock file: recipe %s: %w", name, err)
		}
	}
	return nil
}

// Validate checks one recipe's entry: bounds, every field's syntax, sorted
// packages without duplicates.
func (r *Recipe) Validate() error {
	if len(r.Repositories) > MaxRepositories {
		return fmt.Errorf("%d repositories, more than %d", len(r.Repositories), MaxRepositories)
	}
	for name, d := range r.Repositories {
		if !validLabel(name) {
			return fmt.Errorf("repository %q: not a repository name", name)
		}
		if !validDigest(d) {
			return fmt.Errorf("repository %s: digest %q is not sha256:<64 hex digits>", name, d)
		}
	}
	if len(r.Packages) > MaxPackages {
		return fmt.Errorf("%d packages, more than %d", len(r.Packages), MaxPackages)
	}
	for i, p := range r.Packages {
		if err := p.Validate(); err != nil {
			return fmt.Errorf("package %d: %w", i+1, err)
		}
		if i > 0 {
			switch c := comparePackages(r.Packages[i-1], p); {
			case r.Packages[i-1].ID() == p.ID():
				return fmt.Errorf("package %s %s: listed twice", p.Name, p.Arch)
			case c > 0:
				return fmt.Errorf("package %s: not sorted by name and arch (after %s)", p.Name, r.Packages[i-1].Name)
			}
		}
	}
	return nil
}

// Validate checks one package's fields.
func (p Package) Validate() error {
	switch {
	case !validToken(p.Name, maxName, nameChars) || !isAlnum(p.Name[0]):
		return fmt.Errorf("name %q: want letters, digits and +.-_~ (at most %d)", p.Name, maxName)
	case !validToken(p.Version, maxVersion, versionChars):
		return fmt.Errorf("%s: version %q: want letters, digits and .+-~:_^ (at most %d)", p.Name, p.Version, maxVersion)
	case !validToken(p.Arch, maxArch, archChars):
		return fmt.Errorf("%s: arch %q: want letters, digits and _- (at most %d)", p.Name, p.Arch, maxArch)
	case p.SHA256 != "" && !validHex(p.SHA256):
		return fmt.Errorf("%s: sha256 %q: want 64 lowercase hex digits", p.Name, p.SHA256)
	case p.Path != "" && !validPath(p.Path):
		return fmt.Errorf("%s: path %q: want an absolute URL path of printable ASCII (at most %d)", p.Name, p.Path, maxPath)
	}
	return nil
}

// Sort orders r's packages as Validate wants them.
func (r *Recipe) Sort() {
	slices.SortFunc(r.Packages, comparePackages)
}

func comparePackages(a, b Package) int {
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	if c := strings.Compare(a.Arch, b.Arch); c != 0 {
		return c
	}
	return strings.Compare(a.Version, b.Version)
}

// Encode writes f in the diff-friendly layout of the package doc. Recipes
// and repositories are sorted by name; packages must be sorted (Sort).
func (f *File) Encode() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "{\n  \"version\": %d,\n  \"recipes\": {", f.Version)
	names := sortedKeys(f.Recipes)
	for i, name := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "\n    %s: ", quote(name))
		f.Recipes[name].encode(&b, "    ")
	}
	if len(names) > 0 {
		b.WriteString("\n  ")
	}
	b.WriteString("}\n}\n")
	return b.Bytes()
}

// encode writes r as an object whose closing brace is at indent.
func (r *Recipe) encode(b *bytes.Buffer, indent string) {
	in := indent + "  "
	fmt.Fprintf(b, "{\n%s\"repositories\": {", in)
	repos := sortedKeys(r.Repositories)
	for i, name := range repos {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(b, "\n%s  %s: %s", in, quote(name), quote(r.Repositories[name]))
	}
	if len(repos) > 0 {
		b.WriteString("\n" + in)
	}
	fmt.Fprintf(b, "},\n%s\"packages\": [", in)
	for i, p := range r.Packages {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(b, "\n%s  {\"name\": %s, \"version\": %s, \"arch\": %s", in, quote(p.Name), quote(p.Version), quote(p.Arch))
		if p.SHA256 != "" {
			fmt.Fprintf(b, ", \"sha256\": %s", quote(p.SHA256))
		}
		if p.Path != "" {
			fmt.Fprintf(b, ", \"path\": %s", quote(p.Path))
		}
		b.WriteByte('}')
	}
	if len(r.Packages) > 0 {
		b.WriteString("\n" + in)
	}
	fmt.Fprintf(b, "]\n%s}", indent)
}

// Digest is "sha256:<hex>" of r's encoding: what a --locked prepare's key
// holds, so that any change of the recipe's lock rebuilds it.
func (r *Recipe) Digest() string {
	var b bytes.Buffer
	r.encode(&b, "")
	sum := sha256.Sum256(b.Bytes())
	return "sha256:" + hex.EncodeToString(sum[:])
}

// quote is a JSON string without HTML escaping.
func quote(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // cannot fail for a string
	return strings.TrimSuffix(b.String(), "\n")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
