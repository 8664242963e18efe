package kiwi

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/imsbuild/imsbuild/spec"
)

// Probe backoff of WaitForRepos: the first retry after minBackoff, doubling
// up to maxBackoff.
const (
	minBackoff = time.Second
	maxBackoff = 10 * time.Second
	// probeTimeout bounds one HTTP request of a probe.
	probeTimeout = 30 * time.Second
)

// MetadataURLs returns the metadata files that show a repository is
// published, in the order they are tried: for apt
// <url>/dists/<distribution>/InRelease then Release (<url>/InRelease and
// <url>/Release for a flat repository without distribution); for rpm-md
// <url>/repodata/repomd.xml.
func MetadataURLs(r *spec.Repository) []string {
	base := strings.TrimSuffix(r.URL, "/")
	switch r.Type {
	case "rpm-md":
		return []string{base + "/repodata/repomd.xml"}
	default:
		if r.Distribution != "" {
			base += "/dists/" + r.Distribution
		}
		return []string{base + "/InRelease", base + "/Release"}
	}
}

// probeResult is the outcome of one probe: the last URL tried and why it
// did not answer 200 (nil when it did).
type probeResult struct {
	url string
	err error
}

// statusError is a non-200 answer.
type statusError struct{ status string }

func (e *statusError) Error() string { return "HTTP " + e.status }

// probe tries each metadata URL of r once and returns the first that
// answers 200, with its open body, or the last failure.
func probe(ctx context.Context, client *http.Client, r *spec.Repository) (io.ReadCloser, probeResult) {
	var res probeResult
	for _, u := range MetadataURLs(r) {
		res.url = u
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			res.err = err
			return nil, res
		}
		resp, err := client.Do(req)
		if err != nil {
			res.err = err
			continue
		}
		if resp.StatusCode == http.StatusOK {
			res.err = nil
			return resp.Body, res
		}
		resp.Body.Close()
		res.err = &statusError{resp.Status}
	}
	return nil, res
}

func clientOrDefault(c *http.Client) *http.Client {
	if c != nil {
		return c
	}
	return &http.Client{Timeout: probeTimeout}
}

// WaitForRepos waits until every repository answers, as the IMS
// wait-for-repos step does: each is probed (see MetadataURLs) until one of
// its metadata files answers 200 or its WaitTimeout passes (a zero
// WaitTimeout probes once), retrying with backoff from 1s to 10s. The
// repositories are waited for concurrently; progress lines go to log (nil
// discards them). The error names each repository that never answered, its
// URL and the last HTTP status or error. A nil client uses a default one.
func WaitForRepos(ctx context.Context, client *http.Client, repos []*spec.Repository, log io.Writer) error {
	client = clientOrDefault(client)
	if log == nil {
		log = io.Discard
	}
	var mu sync.Mutex // serializes log lines
	logf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(log, format, args...)
	}
	errs := make([]error, len(repos))
	var g errgroup.Group
	for i, r := range repos {
		g.Go(func() error {
			errs[i] = waitForRepo(ctx, client, r, logf)
			return nil
		})
	}
	g.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("wait for repositories: %w", err)
	}
	return errors.Join(errs...)
}

func waitForRepo(ctx context.Context, client *http.Client, r *spec.Repository, logf func(string, ...any)) error {
	deadline := time.Now().Add(r.WaitTimeout)
	backoff := minBackoff
	for attempt := 1; ; attempt++ {
		// A probe ends at the deadline (but gets at least a second) and
		// after probeTimeout at most.
		end := time.Now().Add(probeTimeout)
		if r.WaitTimeout > 0 {
			end = earliest(end, latest(deadline, time.Now().Add(time.Second)))
		}
		pctx, cancel := context.WithDeadline(ctx, end)
		body, res := probe(pctx, client, r)
		if body != nil {
			body.Close()
		}
		cancel()
		if res.err == nil {
			logf("repository %s: %s answers\n", r.Name, res.url)
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("wait for repository %s %s: %w", r.Name, r.URL, ctx.Err())
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("wait for repository %s %s: no answer after %d attempts in %s: last %s: %w",
				r.Name, r.URL, attempt, r.WaitTimeout, res.url, res.err)
		}
		wait := min(backoff, left)
		logf("repository %s: %s: %v; retrying in %s\n", r.Name, res.url, res.err, wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wait for repository %s %s: %w", r.Name, r.URL, ctx.Err())
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// RepoDigests returns, by repository name, "sha256:<hex>" of the first
// metadata file of each repository that answers (InRelease or Release,
// repomd.xml; see MetadataURLs), streamed while hashing: the track_repos
// part of a prepare key, which changes exactly when a repository is
// republished. A nil client uses a default one.
func RepoDigests(ctx context.Context, client *http.Client, repos []*spec.Repository) (map[string]string, error) {
	client = clientOrDefault(client)
	out := make(map[string]string, len(repos))
	for _, r := range repos {
		d, err := repoDigest(ctx, client, r)
		if err != nil {
			return nil, err
		}
		out[r.Name] = d
	}
	return out, nil
}

func repoDigest(ctx context.Context, client *http.Client, r *spec.Repository) (string, error) {
	body, res := probe(ctx, client, r)
	if body == nil {
		return "", fmt.Errorf("digest repository %s %s: %w", r.Name, res.url, res.err)
	}
	defer body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, body); err != nil {
		return "", fmt.Errorf("digest repository %s %s: %w", r.Name, res.url, err)
	}
	return digest.NewDigest(digest.SHA256, h).String(), nil
}

// maxMetadata bounds how much of a repository's metadata file ReleaseEpoch
// reads (Debian's InRelease is some 150 KB).
const maxMetadata = 64 << 20

// ReleaseEpoch returns the newest publication time of repos' metadata, in
// seconds since 1970: the `Date:` of an apt InRelease or Release, the
// newest `<timestamp>` of an rpm-md repomd.xml. It is a build's default
// SOURCE_DATE_EPOCH: the same repository state gives the same time,
// whatever the time of the build. A file without a date counts as 0, and
// so does no repository. A nil client uses a default one.
func ReleaseEpoch(ctx context.Context, client *http.Client, repos []*spec.Repository) (int64, error) {
	client = clientOrDefault(client)
	var newest int64
	for _, r := range repos {
		body, res := probe(ctx, client, r)
		if body == nil {
			return 0, fmt.Errorf("date of repository %s %s: %w", r.Name, res.url, res.err)
		}
		b, err := io.ReadAll(io.LimitReader(body, maxMetadata))
		body.Close()
		if err != nil {
			return 0, fmt.Errorf("date of repository %s %s: %w", r.Name, res.url, err)
		}
		newest = max(newest, metadataTime(r.Type, b))
	}
	return newest, nil
}

// repomdTimestamp matches a data file's timestamp in repomd.xml.
var repomdTimestamp = regexp.MustCompile(`<timestamp>\s*([0-9]+)\s*</timestamp>`)

// metadataTime returns the publication time in repository metadata b of
// type typ, 0 when it holds none.
func metadataTime(typ string, b []byte) int64 {
	var newest int64
	if typ == "rpm-md" {
		for _, m := range repomdTimestamp.FindAllSubmatch(b, -1) {
			if t, err := strconv.ParseInt(string(m[1]), 10, 64); err == nil && t <= math.MaxUint32 {
				newest = max(newest, t)
			}
		}
		return newest
	}
	for line := range strings.Lines(string(b)) {
		v, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "Date: ")
		if !ok {
			continue
		}
		for _, layout := range []string{time.RFC1123, time.RFC1123Z} {
			if t, err := time.Parse(layout, strings.TrimSpace(v)); err == nil && t.Unix() > 0 && t.Unix() <= math.MaxUint32 {
				return t.Unix()
			}
		}
		return 0 // the first Date: is the Release's own
	}
	return 0
}
