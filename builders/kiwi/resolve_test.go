package kiwi

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imsbuild/imsbuild/internal/testutil"
)

// resolveRepo is an unsigned apt repository on 127.0.0.1 whose index
// lists stanzas, "version arch|Field: value|…" by name (no package file is ever fetched by a resolution). It
// returns the server, the sha256 of each package by name, and the paths
// requested.
func resolveRepo(t *testing.T, stanzas map[string]string) (*httptest.Server, map[string]string, func() []string) {
	t.Helper()
	var idx strings.Builder
	sums := map[string]string{}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range stanzas {
			if !yield(n) {
				return
			}
		}
	})
	for _, name := range names {
		lines := strings.Split(stanzas[name], "|") // "version arch", then more fields
		version, arch, _ := strings.Cut(lines[0], " ")
		sum := sha256.Sum256([]byte(name + version))
		sums[name] = hex.EncodeToString(sum[:])
		fmt.Fprintf(&idx, "Package: %s\nVersion: %s\nArchitecture: %s\nFilename: pool/main/%s_%s_%s.deb\nSize: 100\nSHA256: %s\nDescription: test\n",
			name, version, arch, name, version, arch, sums[name])
		for _, l := range lines[1:] {
			idx.WriteString(l + "\n")
		}
		idx.WriteString("\n")
	}
	packages := []byte(idx.String())
	psum := sha256.Sum256(packages)
	release := fmt.Sprintf("Suite: stable\nCodename: stable\nDate: %s\nArchitectures: amd64\nComponents: main\nSHA256:\n %x %d main/binary-amd64/Packages\n",
		time.Now().UTC().Format(time.RFC1123), psum, len(packages))
	files := map[string][]byte{
		"/dists/stable/Release":                    []byte(release),
		"/dists/stable/main/binary-amd64/Packages": packages,
	}
	var mu sync.Mutex
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.URL.Path)
		mu.Unlock()
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, r.URL.Path, time.Time{}, bytes.NewReader(b))
	}))
	t.Cleanup(srv.Close)
	return srv, sums, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(asked)
	}
}

func resolveDesc(t *testing.T, repos, packages string) string {
	t.Helper()
	dir := t.TempDir()
	xml := `<?xml version="1.0" encoding="utf-8"?>
<image schemaversion="7.5" name="resolvetest">
    <preferences>
        <packagemanager>apt</packagemanager>
        <type image="tbz"/>
    </preferences>
` + repos + packages + `</image>
`
	if err := os.WriteFile(filepath.Join(dir, "config.xml"), []byte(xml), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestResolveApt(t *testing.T) {
	testutil.RequireTool(t, "apt-get")
	srv, sums, asked := resolveRepo(t, map[string]string{
		"base-req":   "1.0 amd64|Priority: required",
		"apt":        "2.6 amd64|Priority: important|Depends: libapt",
		"libapt":     "2.6 amd64",
		"keyring":    "1+deb12u1 all",
		"node-tool":  "1.0 amd64|Depends: libnode|Recommends: rec-only",
		"libnode":    "2.0 amd64",
		"rec-only":   "1.0 amd64",
		"extra-tool": "1.0 amd64",
		"unrelated":  "1.0 amd64",
	})
	repos := fmt.Sprintf(`    <repository type="apt-deb" distribution="stable" components="main" repository_gpgcheck="false">
        <source path="%s/"/>
    </repository>
`, srv.URL)
	desc := resolveDesc(t, repos, `    <packages type="image">
        <package name="node-tool"/>
    </packages>
    <packages type="image" profiles="extra">
        <package name="extra-tool"/>
    </packages>
    <packages type="bootstrap">
        <package name="keyring"/>
    </packages>
`)
	var sets [][]PackageFile
	err := ResolveApt(t.Context(), desc, nil, "x86_64", "", filepath.Join(t.TempDir(), "apt"), func(f []PackageFile) { sets = append(sets, f) })
	if err != nil || len(sets) != 2 {
		t.Fatalf("ResolveApt() = %v with %d sets found, want 2", err, len(sets))
	}
	file := func(name, version, arch string) PackageFile {
		return PackageFile{URL: fmt.Sprintf("%s/pool/main/%s_%s_%s.deb", srv.URL, name, strings.ReplaceAll(version, "+", "%2b"), arch), SHA256: sums[name]}
	}
	bootstrap := []PackageFile{file("base-req", "1.0", "amd64"), file("apt", "2.6", "amd64"), file("libapt", "2.6", "amd64"), file("keyring", "1+deb12u1", "all")}
	image := []PackageFile{file("node-tool", "1.0", "amd64"), file("libnode", "2.0", "amd64")}
	byURL := func(a, b PackageFile) int { return strings.Compare(a.URL, b.URL) }
	// apt's order within each set is its own; the bootstrap set comes first.
	gotBoot, gotImage := slices.Clone(sets[0]), slices.Clone(sets[1])
	slices.SortFunc(gotBoot, byURL)
	slices.SortFunc(gotImage, byURL)
	slices.SortFunc(bootstrap, byURL)
	slices.SortFunc(image, byURL)
	if diff := cmp.Diff(bootstrap, gotBoot); diff != "" {
		t.Errorf("bootstrap set (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(image, gotImage); diff != "" {
		t.Errorf("image set (-want +got):\n%s", diff)
	}
	for _, p := range asked() {
		if strings.HasPrefix(p, "/pool/") {
			t.Errorf("the resolution downloaded %s", p)
		}
	}

	// With the profile, its packages too.
	var got []PackageFile
	err = ResolveApt(t.Context(), desc, []string{"extra"}, "x86_64", "", filepath.Join(t.TempDir(), "apt"), func(f []PackageFile) { got = append(got, f...) })
	if err != nil {
		t.Fatalf("ResolveApt(extra) = %v", err)
	}
	if !slices.Contains(got, file("extra-tool", "1.0", "amd64")) {
		t.Errorf("ResolveApt(extra) = %v, want extra-tool in it", got)
	}
}

// A description's text goes into apt's sources.list and command line:
// what could be read as another line, an option or a pattern is refused.
func TestResolveAptHostile(t *testing.T) {
	srv, _, _ := resolveRepo(t, map[string]string{"a": "1.0 amd64"})
	repo := func(dist, comps, gpg, key string) string {
		signing := ""
		if key != "" {
			signing = fmt.Sprintf(`<signing key="%s"/>`, key)
		}
		return fmt.Sprintf(`<repository type="apt-deb" distribution="%s" components="%s" repository_gpgcheck="%s"><source path="%s">%s</source></repository>
`, dist, comps, gpg, srv.URL, signing)
	}
	pkgs := func(name string) string {
		return fmt.Sprintf(`<packages type="image"><package name="%s"/></packages>
`, name)
	}
	for _, tc := range []struct {
		name, repos, pkgs, want string
	}{
		{"option as package", repo("stable", "main", "false", ""), pkgs("-oDir::Etc=/"), "package name"},
		{"pattern as package", repo("stable", "main", "false", ""), pkgs("?true"), "package name"},
		{"newline in distribution", repo("stable&#10;deb http://evil/ x", "main", "false", ""), pkgs("a"), "distribution"},
		{"option in component", repo("stable", "main] [trusted=yes", "false", ""), pkgs("a"), "component"},
		{"no key", repo("stable", "main", "true", ""), pkgs("a"), "no signing key"},
		{"remote key", repo("stable", "main", "true", "http://evil/key.gpg"), pkgs("a"), "no local file"},
		{"key path with option", repo("stable", "main", "true", "file:///etc/key] [trusted=yes"), pkgs("a"), "no local file"},
		{"https only", `<repository type="apt-deb" distribution="stable"><source path="https://example.invalid/debian"/></repository>`, pkgs("a"), "no http:// apt repository"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			desc := resolveDesc(t, tc.repos, tc.pkgs)
			err := ResolveApt(t.Context(), desc, nil, "x86_64", "", filepath.Join(t.TempDir(), "apt"), func([]PackageFile) { t.Error("found called") })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ResolveApt() = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

func TestParseURIs(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	in := strings.Join([]string{
		"'http://m.example/debian/pool/main/a/a_1%2b2_amd64.deb' a_1+2_amd64.deb 10 SHA256:" + sum,
		"'http://m.example/debian/pool/main/b/b_1_amd64.deb' b_1_amd64.deb 10 MD5Sum:0123",          // no sha256
		"'https://m.example/debian/pool/main/c/c_1_amd64.deb' c_1_amd64.deb 10 SHA256:" + sum,       // not http
		"'http://m.example/debian/pool/main/d/d_1_amd64.deb' d_1_amd64.deb 10 SHA256:" + sum[:63],   // short
		"'http://m.example/debian/pool/main/e/e_1_amd64.deb' e_1_amd64.deb 10 SHA256:" + sum + " x", // extra field
		"Reading package lists...",
	}, "\n")
	want := []PackageFile{{URL: "http://m.example/debian/pool/main/a/a_1%2b2_amd64.deb", SHA256: sum}}
	if diff := cmp.Diff(want, parseURIs([]byte(in))); diff != "" {
		t.Errorf("parseURIs() (-want +got):\n%s", diff)
	}
}
