package faultproxy

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// backend echoes the request body length and counts requests.
func backend(t *testing.T) (host string, hits *atomic.Int64) {
	t.Helper()
	n := new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		b, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, r.Host+" "+strings.Repeat("x", len(b)%7))
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), n
}

// outcome is what one request saw: a status or "error".
func outcome(c *http.Client, method, url string, body []byte) string {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return "bad request"
	}
	resp, err := c.Do(req)
	if err != nil {
		return "error"
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Status
}

func TestFaults(t *testing.T) {
	tests := []struct {
		name    string
		faults  Faults
		bodies  []int // body size of each request, all POSTs
		want    []string
		stats   Stats
		backend int64 // requests the backend saw
	}{{
		name:    "none",
		bodies:  []int{0, 10, 0},
		want:    []string{"200 OK", "200 OK", "200 OK"},
		stats:   Stats{Requests: 3, Forwarded: 3},
		backend: 3,
	}, {
		name:    "every 3rd 500",
		faults:  Faults{Status500Every: 3},
		bodies:  []int{0, 0, 0, 0, 0, 0, 0},
		want:    []string{"200 OK", "200 OK", "500 Internal Server Error", "200 OK", "200 OK", "500 Internal Server Error", "200 OK"},
		stats:   Stats{Requests: 7, Forwarded: 5, Status500: 2},
		backend: 5,
	}, {
		name:    "all 500",
		faults:  Faults{Status500Every: 1},
		bodies:  []int{0, 0},
		want:    []string{"500 Internal Server Error", "500 Internal Server Error"},
		stats:   Stats{Requests: 2, Status500: 2},
		backend: 0,
	}, {
		name:    "drop every 2nd before 500",
		faults:  Faults{DropEvery: 2, Status500Every: 2},
		bodies:  []int{0, 0, 0, 0},
		want:    []string{"200 OK", "error", "200 OK", "error"},
		stats:   Stats{Requests: 4, Forwarded: 2, Dropped: 2},
		backend: 2,
	}, {
		name:    "reset once after 1000 bytes",
		faults:  Faults{ResetAfterBytes: 1000},
		bodies:  []int{500, 5000, 5000},
		want:    []string{"200 OK", "error", "200 OK"},
		stats:   Stats{Requests: 3, Forwarded: 2, Resets: 1},
		backend: 2,
	}, {
		name:    "only PUT",
		faults:  Faults{Status500Every: 1, Only: func(r *http.Request) bool { return r.Method == http.MethodPut }},
		bodies:  []int{0, 1, 0},
		want:    []string{"200 OK", "500 Internal Server Error", "200 OK"},
		stats:   Stats{Requests: 3, Forwarded: 2, Status500: 1},
		backend: 2,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			host, hits := backend(t)
			p := Start(t, host, tc.faults)
			// No keep-alive and no transparent retries: one attempt per request.
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			var got []string
			for i, n := range tc.bodies {
				method := http.MethodPost
				if tc.name == "only PUT" && i == 1 {
					method = http.MethodPut
				}
				got = append(got, outcome(c, method, p.URL()+"/x", bytes.Repeat([]byte("a"), n)))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("outcomes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.stats, p.Stats()); diff != "" {
				t.Errorf("Stats() (-want +got):\n%s", diff)
			}
			if got := hits.Load(); got != tc.backend {
				t.Errorf("backend saw %d requests, want %d", got, tc.backend)
			}
		})
	}
}

func TestKeepsHost(t *testing.T) {
	host, _ := backend(t)
	p := Start(t, host, Faults{})
	resp, err := http.Get(p.URL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if got := strings.Fields(string(b))[0]; got != p.Addr {
		t.Errorf("backend saw Host %q, want the proxy's %q", got, p.Addr)
	}
}

func TestDelay(t *testing.T) {
	host, _ := backend(t)
	const d = 100 * time.Millisecond
	p := Start(t, host, Faults{DelayPerRequest: d})
	start := time.Now()
	resp, err := http.Get(p.URL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if el := time.Since(start); el < d {
		t.Errorf("request took %v, want at least %v", el, d)
	}
	if s := p.Stats(); s.Delayed != 1 {
		t.Errorf("Stats().Delayed = %d, want 1", s.Delayed)
	}
	p.SetFaults(Faults{Status500Every: 1})
	if got := outcome(http.DefaultClient, http.MethodGet, p.URL()+"/", nil); got != "500 Internal Server Error" {
		t.Errorf("after SetFaults: %s, want 500", got)
	}
}
