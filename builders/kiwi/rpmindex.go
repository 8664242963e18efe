package kiwi

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/imsbuild/imsbuild/spec"
)

// maxRepomd bounds repomd.xml; maxPrimary the uncompressed primary.xml.
const (
	maxRepomd  = 16 << 20
	maxPrimary = 2 << 30
)

// Index returns the index entries (see AptIndex) of repository r, apt or
// rpm-md, for the packages want accepts.
func Index(ctx context.Context, client *http.Client, r *spec.Repository, arches []string, want func(key string) bool) (map[string]IndexEntry, error) {
	if r.Type == "rpm-md" {
		return rpmIndex(ctx, clientOrDefault(client), r, want)
	}
	return AptIndex(ctx, client, r, arches, want)
}

// RPMVersion is the version of an rpm as a lock and IndexKey write it:
// "version-release", prefixed by "epoch:" unless the epoch is 0 or none.
func RPMVersion(epoch, version, release string) string {
	v := version + "-" + release
	if epoch != "" && epoch != "0" {
		v = epoch + ":" + v
	}
	return v
}

// rpmChecksum and rpmLocation are the <checksum> and <location> elements
// that repomd.xml's data entries and primary.xml's packages both have.
type rpmChecksum struct {
	Type  string `xml:"type,attr"`
	Value string `xml:",chardata"`
}

type rpmLocation struct {
	Href string `xml:"href,attr"`
}

type repomd struct {
	Data []struct {
		Type     string      `xml:"type,attr"`
		Checksum rpmChecksum `xml:"checksum"`
		Location rpmLocation `xml:"location"`
	} `xml:"data"`
}

type rpmPackage struct {
	Name    string `xml:"name"`
	Arch    string `xml:"arch"`
	Version struct {
		Epoch string `xml:"epoch,attr"`
		Ver   string `xml:"ver,attr"`
		Rel   string `xml:"rel,attr"`
	} `xml:"version"`
	Checksum rpmChecksum `xml:"checksum"`
	Location rpmLocation `xml:"location"`
}

// rpmIndex reads repository r's primary.xml (.gz, .zst or plain), checked
// against the sha256 repomd.xml lists, and returns the entries want
// accepts: the package's sha256 (its pkgid) and the URL path of its
// location.
func rpmIndex(ctx context.Context, client *http.Client, r *spec.Repository, want func(string) bool) (map[string]IndexEntry, error) {
	base := strings.TrimSuffix(r.URL, "/")
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("index of repository %s: %w", r.Name, err)
	}
	body, err := get(ctx, client, base+"/repodata/repomd.xml")
	if err != nil {
		return nil, fmt.Errorf("index of repository %s: %w", r.Name, err)
	}
	var md repomd
	err = xml.NewDecoder(io.LimitReader(body, maxRepomd)).Decode(&md)
	body.Close()
	if err != nil {
		return nil, fmt.Errorf("index of repository %s: repomd.xml: %w", r.Name, err)
	}
	for _, d := range md.Data {
		if d.Type != "primary" {
			continue
		}
		href := d.Location.Href
		if d.Checksum.Type != "sha256" || len(strings.TrimSpace(d.Checksum.Value)) != 64 {
			return nil, fmt.Errorf("index of repository %s: primary checksum of type %q, want sha256", r.Name, d.Checksum.Type)
		}
		if href == "" || strings.Contains(href, "..") || strings.Contains(href, "://") || strings.HasPrefix(href, "/") {
			return nil, fmt.Errorf("index of repository %s: primary location %q", r.Name, href)
		}
		out, err := readPrimary(ctx, client, base+"/"+href, strings.ToLower(strings.TrimSpace(d.Checksum.Value)), u.EscapedPath(), want)
		if err != nil {
			return nil, fmt.Errorf("index of repository %s: %w", r.Name, err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("index of repository %s: repomd.xml lists no primary", r.Name)
}

func readPrimary(ctx context.Context, client *http.Client, u, wantSum, basePath string, want func(string) bool) (map[string]IndexEntry, error) {
	body, err := get(ctx, client, u)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	h := sha256.New()
	tee := io.TeeReader(body, h)
	var r io.Reader = tee
	switch path.Ext(u) {
	case ".gz":
		zr, err := gzip.NewReader(tee)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", u, err)
		}
		r = zr
	case ".zst":
		zr, err := zstd.NewReader(tee, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", u, err)
		}
		defer zr.Close()
		r = zr
	case ".xml":
	default:
		return nil, fmt.Errorf("%s: compression not supported", u)
	}
	out := map[string]IndexEntry{}
	dec := xml.NewDecoder(io.LimitReader(r, maxPrimary))
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", u, err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok || se.Name.Local != "package" {
			continue
		}
		var p rpmPackage
		if err := dec.DecodeElement(&p, &se); err != nil {
			return nil, fmt.Errorf("%s: %w", u, err)
		}
		sum := strings.ToLower(strings.TrimSpace(p.Checksum.Value))
		href := p.Location.Href
		if p.Checksum.Type != "sha256" || len(sum) != 64 || href == "" || strings.Contains(href, "..") || strings.Contains(href, "://") {
			continue
		}
		k := IndexKey(p.Name, RPMVersion(p.Version.Epoch, p.Version.Ver, p.Version.Rel), p.Arch)
		if want(k) {
			out[k] = IndexEntry{Path: basePath + "/" + strings.TrimPrefix(href, "/"), SHA256: sum}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != wantSum {
		return nil, fmt.Errorf("%s: sha256 %s, repomd.xml lists %s: %w", u, got, wantSum, errIndexChanged)
	}
	return out, nil
}
