package kiwi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imsbuild/imsbuild/spec"
)

func TestMetadataURLs(t *testing.T) {
	tests := []struct {
		repo spec.Repository
		want []string
	}{
		{spec.Repository{Type: "apt", URL: "http://m/debian/", Distribution: "bookworm"},
			[]string{"http://m/debian/dists/bookworm/InRelease", "http://m/debian/dists/bookworm/Release"}},
		{spec.Repository{Type: "apt", URL: "http://m/flat"},
			[]string{"http://m/flat/InRelease", "http://m/flat/Release"}},
		{spec.Repository{Type: "rpm-md", URL: "http://m/sles"},
			[]string{"http://m/sles/repodata/repomd.xml"}},
	}
	for _, tc := range tests {
		if got := MetadataURLs(&tc.repo); !cmp.Equal(got, tc.want) {
			t.Errorf("MetadataURLs(%s) = %q, want %q", tc.repo.URL, got, tc.want)
		}
	}
}

// flakyRepo serves an apt repository whose Release (no InRelease) answers
// 404 for the first fails requests.
type flakyRepo struct {
	fails    int32
	requests atomic.Int32
	mu       sync.Mutex
	release  string
}

func (f *flakyRepo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/debian/dists/bookworm/Release" {
		http.NotFound(w, r)
		return
	}
	if f.requests.Add(1) <= f.fails {
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Write([]byte(f.release))
}

func (f *flakyRepo) set(release string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.release = release
}

func TestWaitForRepos(t *testing.T) {
	repo := &flakyRepo{fails: 2, release: "Suite: bookworm\n"}
	srv := httptest.NewServer(repo)
	defer srv.Close()
	r := &spec.Repository{Name: "debian", Type: "apt", URL: srv.URL + "/debian", Distribution: "bookworm", WaitTimeout: time.Minute}
	var log bytes.Buffer
	start := time.Now()
	if err := WaitForRepos(t.Context(), srv.Client(), []*spec.Repository{r}, &log); err != nil {
		t.Fatalf("WaitForRepos() = %v", err)
	}
	if got := repo.requests.Load(); got != 3 {
		t.Errorf("Release requested %d times, want 3", got)
	}
	// Backoff 1s then 2s.
	if d := time.Since(start); d < 3*time.Second || d > 20*time.Second {
		t.Errorf("WaitForRepos took %s, want about 3s", d)
	}
	if !strings.Contains(log.String(), "404 Not Found; retrying in 1s") || !strings.Contains(log.String(), "retrying in 2s") {
		t.Errorf("log =\n%s", log.String())
	}
}

func TestWaitForReposTimeout(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer ok.Close()
	repos := []*spec.Repository{
		{Name: "sles", Type: "rpm-md", URL: srv.URL + "/sles", WaitTimeout: 1500 * time.Millisecond},
		{Name: "good", Type: "rpm-md", URL: ok.URL + "/good", WaitTimeout: time.Second},
	}
	start := time.Now()
	err := WaitForRepos(t.Context(), srv.Client(), repos, nil)
	if err == nil {
		t.Fatal("WaitForRepos() = nil, want a timeout error")
	}
	for _, want := range []string{"sles", srv.URL + "/sles/repodata/repomd.xml", "404 Not Found"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("WaitForRepos() = %v, want it to name %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "good") {
		t.Errorf("WaitForRepos() = %v, names the repository that answered", err)
	}
	if d := time.Since(start); d < 1500*time.Millisecond || d > 10*time.Second {
		t.Errorf("WaitForRepos took %s, want about 1.5s", d)
	}
}

func TestWaitForReposCancel(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	r := &spec.Repository{Name: "x", Type: "apt", URL: srv.URL, Distribution: "d", WaitTimeout: time.Hour}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := WaitForRepos(ctx, srv.Client(), []*spec.Repository{r}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitForRepos() = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("WaitForRepos returned after %s, want promptly", d)
	}
}

func TestRepoDigests(t *testing.T) {
	apt := &flakyRepo{release: "Suite: bookworm\nDate: 1\n"}
	aptSrv := httptest.NewServer(apt)
	defer aptSrv.Close()
	rpmSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/sles/repodata/repomd.xml" {
			w.Write([]byte("<repomd/>"))
			return
		}
		http.NotFound(w, r)
	}))
	defer rpmSrv.Close()
	repos := []*spec.Repository{
		{Name: "debian", Type: "apt", URL: aptSrv.URL + "/debian", Distribution: "bookworm"},
		{Name: "sles", Type: "rpm-md", URL: rpmSrv.URL + "/sles"},
	}
	first, err := RepoDigests(t.Context(), nil, repos)
	if err != nil {
		t.Fatalf("RepoDigests() = %v", err)
	}
	want := map[string]string{
		"debian": "sha256:" + sha256hex("Suite: bookworm\nDate: 1\n"),
		"sles":   "sha256:" + sha256hex("<repomd/>"),
	}
	if diff := cmp.Diff(want, first); diff != "" {
		t.Errorf("RepoDigests() (-want +got):\n%s", diff)
	}
	again, err := RepoDigests(t.Context(), nil, repos)
	if err != nil || !cmp.Equal(first, again) {
		t.Errorf("RepoDigests() again = %v, %v; want %v", again, err, first)
	}
	apt.set("Suite: bookworm\nDate: 2\n")
	changed, err := RepoDigests(t.Context(), nil, repos)
	if err != nil {
		t.Fatal(err)
	}
	if changed["debian"] == first["debian"] || changed["sles"] != first["sles"] {
		t.Errorf("after republishing debian: %v, before %v", changed, first)
	}

	repos[1].URL = rpmSrv.URL + "/missing"
	if _, err := RepoDigests(t.Context(), nil, repos); err == nil || !strings.Contains(err.Error(), "/missing/repodata/repomd.xml") {
		t.Errorf("RepoDigests(missing) = %v, want an error naming the URL", err)
	}
}

func sha256hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestReleaseEpoch(t *testing.T) {
	files := map[string]string{
		// Debian's InRelease is clearsigned; its first Date: is the Release's.
		"/debian/dists/bookworm/InRelease": "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nOrigin: Debian\nDate: Sat, 11 Jul 2026 10:16:37 UTC\nValid-Until: Sat, 18 Jul 2026 10:16:37 UTC\n",
		"/security/dists/bookworm/Release": "Origin: Debian\nDate: Mon, 02 Nov 2026 08:00:00 +0000\n",
		"/sles/repodata/repomd.xml":        "<repomd><revision>5</revision><data type=\"primary\"><timestamp>1790000000</timestamp></data><data type=\"filelists\"><timestamp>1790000100</timestamp></data></repomd>",
		"/nodate/dists/x/Release":          "Origin: Nobody\nDate: yesterday\n",
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f, ok := files[r.URL.Path]; ok {
			w.Write([]byte(f))
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	debian := &spec.Repository{Name: "debian", Type: "apt", URL: srv.URL + "/debian", Distribution: "bookworm"}
	security := &spec.Repository{Name: "security", Type: "apt", URL: srv.URL + "/security", Distribution: "bookworm"}
	sles := &spec.Repository{Name: "sles", Type: "rpm-md", URL: srv.URL + "/sles"}
	nodate := &spec.Repository{Name: "nodate", Type: "apt", URL: srv.URL + "/nodate", Distribution: "x"}
	tests := []struct {
		name  string
		repos []*spec.Repository
		want  int64
	}{
		{"none", nil, 0},
		{"InRelease", []*spec.Repository{debian}, time.Date(2026, 7, 11, 10, 16, 37, 0, time.UTC).Unix()},
		{"the newest", []*spec.Repository{debian, security}, time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC).Unix()},
		{"repomd", []*spec.Repository{sles}, 1790000100},
		{"no date", []*spec.Repository{nodate}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReleaseEpoch(t.Context(), nil, tc.repos)
			if err != nil || got != tc.want {
				t.Errorf("ReleaseEpoch() = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
	missing := &spec.Repository{Name: "gone", Type: "apt", URL: srv.URL + "/gone", Distribution: "x"}
	if _, err := ReleaseEpoch(t.Context(), nil, []*spec.Repository{debian, missing}); err == nil || !strings.Contains(err.Error(), "/gone/dists/x/Release") {
		t.Errorf("ReleaseEpoch(missing) = %v, want an error naming the URL", err)
	}
}
