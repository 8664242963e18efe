package server

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/ims/server/blob"
	"github.com/imsbuild/imsbuild/ims/server/store"
)

// BenchmarkServe10k measures request latency with 10,000 images and 50
// concurrent clients on loopback, for a list-only, a create-only and a
// mixed load, and reports p50/p99 in ms and the process's peak RSS:
//
//	go test ./ims/server -run '^$' -bench Serve10k -benchtime 1x
//
// No S3 is involved (records without links), so it needs no versitygw.
func BenchmarkServe10k(b *testing.B) {
	dir := b.TempDir()
	st, err := store.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	err = st.Images.Update(func(tx store.Tx[store.Image]) error {
		for i := range 10000 {
			if err := tx.Put(imageRecord(i)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := New(Config{Store: st, Blobs: blob.New(nil), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	const clients = 50
	// Lists ask for gzip, as Go's and Python's clients do by default; the
	// client's gunzip is its own work and not timed.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, DisableCompression: true}}
	post := []byte(`{"name":"bench","metadata":{"key":"k","value":"v"}}`)
	do := func(method, path string, body []byte) (time.Duration, int) {
		start := time.Now()
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, _ := http.NewRequest(method, ts.URL+path, rd)
		req.Header.Set("Content-Type", "application/json")
		if method == "GET" && path == "/v3/images" {
			req.Header.Set("Accept-Encoding", "gzip")
		}
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return time.Since(start), resp.StatusCode
	}
	run := func(name string, perClient int, op func(c, i int) (string, time.Duration, int)) {
		lat := map[string][]time.Duration{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := time.Now()
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perClient {
					kind, d, status := op(c, i)
					if status >= 500 {
						b.Errorf("%s: status %d", kind, status)
					}
					mu.Lock()
					lat[kind] = append(lat[kind], d)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		for kind, ds := range lat {
			slices.Sort(ds)
			p := func(q float64) float64 { return float64(ds[int(q*float64(len(ds)-1))].Microseconds()) / 1000 }
			b.ReportMetric(p(0.50), name+"-"+kind+"-p50-ms")
			b.ReportMetric(p(0.99), name+"-"+kind+"-p99-ms")
			b.Logf("%s %s: %d requests, p50 %.2f ms, p99 %.2f ms (goal < 20 ms), max %.2f ms (%.0f req/s overall; load %s)",
				name, kind, len(ds), p(0.5), p(0.99), p(1), float64(clients*perClient)/elapsed.Seconds(), loadAvg())
		}
	}
	only := os.Getenv("IMSBUILD_BENCH_ONLY") // list, create or mixed; default all
	for range b.N {
		if only != "" {
			switch only {
			case "list":
				run("list", 10, func(_, _ int) (string, time.Duration, int) { d, s := do("GET", "/v3/images", nil); return "list", d, s })
			case "create":
				run("create", 20, func(_, _ int) (string, time.Duration, int) {
					d, s := do("POST", "/v3/images", post)
					return "post", d, s
				})
			}
			continue
		}
		run("list", 10, func(_, _ int) (string, time.Duration, int) {
			d, s := do("GET", "/v3/images", nil)
			return "list", d, s
		})
		run("create", 20, func(_, _ int) (string, time.Duration, int) {
			d, s := do("POST", "/v3/images", post)
			return "post", d, s
		})
		run("mixed", 40, func(c, i int) (string, time.Duration, int) {
			switch i % 4 {
			case 0:
				d, s := do("GET", "/v3/images", nil)
				return "list", d, s
			case 1:
				d, s := do("POST", "/v3/images", post)
				return "post", d, s
			case 2:
				d, s := do("GET", "/v3/images/"+imageRecord((c*40+i)%10000).ID, nil)
				return "get", d, s
			}
			d, s := do("PATCH", "/v3/images/"+imageRecord((c*40+i)%10000).ID, []byte(`{"metadata":{"operation":"set","key":"a","value":"b"}}`))
			return "patch", d, s
		})
	}
	b.ReportMetric(float64(peakRSS())/(1<<20), "peak-rss-MB")
	b.Logf("peak RSS of the test process (server and clients): %.1f MB; images file %d records", float64(peakRSS())/(1<<20), st.Images.Len())
}

// loadAvg returns the 1, 5 and 15 minute load averages: on a shared
// machine the figures mean little without them.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(data)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// peakRSS returns VmHWM of this process in bytes.
func peakRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n << 10
		}
	}
	return 0
}
