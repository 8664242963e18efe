package kiwi

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/imsbuild/imsbuild/spec"
)

// Bounds of what AptIndex reads: Debian's Release is about 150 KiB and
// its largest Packages index 50 MiB.
const (
	maxRelease      = 16 << 20
	maxPackages     = 1 << 30 // uncompressed, per index
	maxStanzaLine   = 1 << 20
	indexDefaultCmp = "main"
)

// IndexEntry is a package file as a repository's index lists it: the URL
// path of the file and its sha256 (hex), which apt checks the download
// against.
type IndexEntry struct {
	Path   string
	SHA256 string
}

// IndexKey is the key of AptIndex's entries: "name version arch", the
// version with its epoch as dpkg has it.
func IndexKey(name, version, arch string) string { return name + " " + version + " " + arch }

// AptIndex reads the Packages indexes of apt repository r (its
// components, "main" when none; binary-<arch> for each of arches and
// binary-all) and returns the entries whose IndexKey want accepts. Each
// index is checked against the sha256 its Release (InRelease) lists, so
// the entries are those the repository's signed metadata vouches for;
// Packages.gz is read when listed, else Packages. A flat repository (no
// distribution) and rpm-md have no such index here: nil, nil.
func AptIndex(ctx context.Context, client *http.Client, r *spec.Repository, arches []string, want func(key string) bool) (map[string]IndexEntry, error) {
	if r.Type == "rpm-md" || r.Distribution == "" {
		return nil, nil
	}
	client = clientOrDefault(client)
	base := strings.TrimSuffix(r.URL, "/")
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("index of repository %s: %w", r.Name, err)
	}
	dists := base + "/dists/" + r.Distribution
	release, err := getRelease(ctx, client, dists)
	if err != nil {
		return nil, fmt.Errorf("index of repository %s: %w", r.Name, err)
	}
	sums := releaseSHA256(release)
	comps := r.Components
	if len(comps) == 0 {
		comps = []string{indexDefaultCmp}
	}
	arches = append(slices.Clone(arches), "all")
	slices.Sort(arches)
	arches = slices.Compact(arches)
	out := map[string]IndexEntry{}
	for _, c := range comps {
		for _, a := range arches {
			rel := c + "/binary-" + a + "/Packages"
			name, gz := rel+".gz", true
			if _, ok := sums[name]; !ok {
				name, gz = rel, false
			}
			sum, ok := sums[name]
			if !ok {
				continue // the repository has no such index
			}
			if err := readIndex(ctx, client, dists+"/"+name, sum, gz, u.EscapedPath(), want, out); err != nil {
				return nil, fmt.Errorf("index of repository %s: %w", r.Name, err)
			}
		}
	}
	return out, nil
}

// getRelease fetches dists' InRelease, else its Release.
func getRelease(ctx context.Context, client *http.Client, dists string) ([]byte, error) {
	var last error
	for _, name := range []string{"InRelease", "Release"} {
		body, err := get(ctx, client, dists+"/"+name)
		if err != nil {
			last = err
			continue
		}
		b, err := io.ReadAll(io.LimitReader(body, maxRelease+1))
		body.Close()
		if err != nil {
			return nil, fmt.Errorf("%s/%s: %w", dists, name, err)
		}
		if len(b) > maxRelease {
			return nil, fmt.Errorf("%s/%s: more than %d bytes", dists, name, maxRelease)
		}
		return b, nil
	}
	return nil, last
}

func get(ctx context.Context, client *http.Client, u string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("%s: HTTP %s", u, resp.Status)
	}
	return resp.Body, nil
}

// releaseSHA256 returns the SHA256 section of a Release (or the text of an
// InRelease): path → hex digest.
func releaseSHA256(release []byte) map[string]string {
	out := map[string]string{}
	in := false
	for line := range strings.Lines(string(release)) {
		line = strings.TrimRight(line, "\r\n")
		switch {
		case strings.HasPrefix(line, "SHA256:"):
			in = true
		case in && strings.HasPrefix(line, " "):
			f := strings.Fields(line)
			if len(f) == 3 && len(f[0]) == 64 {
				out[f[2]] = strings.ToLower(f[0])
			}
		default:
			in = false
		}
	}
	return out
}

// readIndex reads one Packages index at u, checks its sha256 at EOF and
// adds the entries want accepts to out. basePath is the repository's URL
// path, which the index's Filename fields are relative to.
func readIndex(ctx context.Context, client *http.Client, u, wantSum string, gz bool, basePath string, want func(string) bool, out map[string]IndexEntry) error {
	body, err := get(ctx, client, u)
	if err != nil {
		return err
	}
	defer body.Close()
	h := sha256.New()
	tee := io.TeeReader(body, h)
	r := tee
	if gz {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return fmt.Errorf("%s: %w", u, err)
		}
		r = zr
	}
	found := map[string]IndexEntry{}
	sc := bufio.NewScanner(io.LimitReader(r, maxPackages))
	sc.Buffer(make([]byte, 64<<10), maxStanzaLine)
	var name, version, arch, file, sum string
	flush := func() {
		if name != "" && file != "" && len(sum) == 64 && !strings.Contains(file, "..") {
			if k := IndexKey(name, version, arch); want(k) {
				found[k] = IndexEntry{Path: basePath + "/" + strings.TrimPrefix(file, "/"), SHA256: strings.ToLower(sum)}
			}
		}
		name, version, arch, file, sum = "", "", "", "", ""
	}
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			flush()
			continue
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		val := string(bytes.TrimSpace(v))
		switch string(k) {
		case "Package":
			name = val
		case "Version":
			version = val
		case "Architecture":
			arch = val
		case "Filename":
			file = val
		case "SHA256":
			sum = val
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", u, err)
	}
	flush()
	if err := ctx.Err(); err != nil {
		return err
	}
	// Drain what the decompressor left, so the digest covers the file.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return fmt.Errorf("%s: %w", u, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != wantSum {
		return fmt.Errorf("%s: sha256 %s, the Release lists %s: %w", u, got, wantSum, errIndexChanged)
	}
	for k, e := range found {
		out[k] = e
	}
	return nil
}

// errIndexChanged is an index that is not the one its Release lists (the
// repository is being republished).
var errIndexChanged = errors.New("index does not match its Release")
