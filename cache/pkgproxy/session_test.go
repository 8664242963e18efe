package pkgproxy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imsbuild/imsbuild/cache"
)

func digestOf(b []byte) cache.Digest {
	sum := sha256.Sum256(b)
	return cache.Digest("sha256:" + hex.EncodeToString(sum[:]))
}

// sessionClient returns a client whose proxy is session s.
func sessionClient(t *testing.T, s *Session) *http.Client {
	t.Helper()
	return proxyClient(t, &Proxy{url: s.URL()})
}

func startSession(t *testing.T, p *Proxy, h Hooks) *Session {
	t.Helper()
	s, err := p.Session(h)
	if err != nil {
		t.Fatalf("Session() = %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Session.Close() = %v", err)
		}
	})
	return s
}

func TestSessionServedHook(t *testing.T) {
	m := newMirror(t)
	c := newCache(t)
	p := startProxy(t, c)
	var rec []string
	var mu sync.Mutex
	s := startSession(t, p, Hooks{Served: func(url string, d cache.Digest, size int64) {
		mu.Lock()
		defer mu.Unlock()
		rec = append(rec, fmt.Sprintf("%s %s %d", url, d, size))
	}})
	client := sessionClient(t, s)
	want := m.files[debPath]
	for range 2 { // a miss, then a hit
		_, body := mustGet(t, client, http.MethodGet, m.url(debPath), http.StatusOK)
		if string(body) != string(want) {
			t.Fatalf("session GET: %d bytes, want the mirror's %d", len(body), len(want))
		}
	}
	mustGet(t, client, http.MethodGet, m.url(inRelease), http.StatusOK)          // metadata: not a package
	mustGet(t, proxyClient(t, p), http.MethodGet, m.url(debPath), http.StatusOK) // the proxy itself: no hooks
	poll(t, "the proxy to be idle", func() bool { return p.inFlight() == 0 })
	canon := "http://" + strings.TrimPrefix(m.URL, "http://") + debPath
	line := fmt.Sprintf("%s %s %d", canon, digestOf(want), len(want))
	mu.Lock()
	got := append([]string(nil), rec...)
	mu.Unlock()
	if d := cmp.Diff([]string{line, line}, got); d != "" {
		t.Errorf("Served calls (-want +got):\n%s", d)
	}
	if st := stats(t, p); st.Hits != 2 || st.Misses != 1 {
		t.Errorf("proxy Stats() = %+v, want the session's requests counted: 2 hits, 1 miss", st)
	}
}

func TestSessionCheck(t *testing.T) {
	m := newMirror(t)
	c := newCache(t)
	p := startProxy(t, c)
	other := "/pool/main/c/c1_1.0_amd64.deb"
	var mu sync.Mutex
	var checks []string
	s := startSession(t, p, Hooks{Check: func(url string, d cache.Digest) error {
		mu.Lock()
		checks = append(checks, url+" "+string(d))
		mu.Unlock()
		switch {
		case strings.HasSuffix(url, missingDeb):
			return errors.New("package missing: not in the lock")
		case strings.HasSuffix(url, other) && d != "":
			return errors.New("c1: locked another digest")
		}
		return nil
	}})
	client := sessionClient(t, s)

	// Refused by name: 403 with the reason, and upstream never asked.
	resp, body, err := get(t, client, http.MethodGet, m.url(missingDeb))
	if err != nil || resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "package missing: not in the lock") {
		t.Fatalf("refused package: %v, %v, %q; want 403 with the reason", err, resp, body)
	}
	if n := m.count(missingDeb); n != 0 {
		t.Errorf("upstream requests for a refused package = %d, want 0", n)
	}

	// Refused by digest on a miss: the download fails, yet the package is
	// cached (it is the repository's), and refused again on the hit.
	if err := downloadFailed(t, client, m.url(other)); err == nil {
		t.Fatal("a package of another digest was downloaded whole")
	}
	if indexed(t, p, c, m.url(other)) == nil {
		t.Error("a refused download was not cached")
	}
	resp, _, err = get(t, client, http.MethodGet, m.url(other))
	if err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("refused cached package: %v, %v; want 403", err, resp)
	}
	// The proxy itself does not check.
	mustGet(t, proxyClient(t, p), http.MethodGet, m.url(other), http.StatusOK)

	// A checked package is sent whole, whatever the client asked.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, m.url(debPath), nil)
	req.Header.Set("Range", "bytes=0-9")
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body) // whole, so the proxy checks its digest
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || n != int64(len(m.files[debPath])) {
		t.Errorf("checked Range request: %d, %d bytes; want 200 with the whole package", resp.StatusCode, resp.ContentLength)
	}
	poll(t, "the proxy to be idle", func() bool { return p.inFlight() == 0 })
	mu.Lock()
	defer mu.Unlock()
	canon := "http://" + strings.TrimPrefix(m.URL, "http://")
	want := []string{
		canon + missingDeb + " ",
		canon + other + " ", canon + other + " " + string(digestOf(m.files[other])),
		canon + other + " ", canon + other + " " + string(digestOf(m.files[other])),
		canon + debPath + " ", canon + debPath + " " + string(digestOf(m.files[debPath])),
	}
	if d := cmp.Diff(want, checks); d != "" {
		t.Errorf("Check calls (-want +got):\n%s", d)
	}
}

func TestSessionClose(t *testing.T) {
	m := newMirror(t)
	c := newCache(t)
	base := goroutineBaseline()
	p, err := Start(t.Context(), Options{Store: c, Actions: c.Actions()})
	if err != nil {
		t.Fatal(err)
	}
	s1, err := p.Session(Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := p.Session(Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	c1, c2 := sessionClient(t, s1), sessionClient(t, s2)
	mustGet(t, c1, http.MethodGet, m.url(debPath), http.StatusOK)
	mustGet(t, c2, http.MethodGet, m.url(debPath), http.StatusOK)
	if err := s1.Close(); err != nil {
		t.Errorf("Session.Close() = %v", err)
	}
	if _, _, err := get(t, c1, http.MethodGet, m.url(inRelease)); err == nil {
		t.Error("request through a closed session succeeded")
	}
	mustGet(t, c2, http.MethodGet, m.url(inRelease), http.StatusOK)
	// The proxy's Close ends the sessions left open.
	if err := p.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
	if _, _, err := get(t, c2, http.MethodGet, m.url(inRelease)); err == nil {
		t.Error("request through a session of a closed proxy succeeded")
	}
	if err := s2.Close(); err != nil || s1.Close() != nil {
		t.Errorf("Session.Close() after the proxy's = %v", err)
	}
	if _, err := p.Session(Hooks{}); err == nil {
		t.Error("Session() on a closed proxy succeeded")
	}
	c1.CloseIdleConnections()
	c2.CloseIdleConnections()
	noLeak(t, base)
}
