package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"
)

// benchServeAPI measures `imsbuild serve` (a child process, as in
// production) with 10,000 image records and 50 concurrent clients on
// loopback: GET /v3/images compressed (the client asks for gzip, as Go's
// and Python's HTTP clients do by default) and plain, and POST
// /v3/images (each acknowledged record fsynced). Several rounds, each
// with the load average, then the medians beside the goals of issue 12.
// The clients run in this process on the same cores as the server: on
// 2 shared cores they compete with it, which the load shows. The
// client's own work (gunzip, JSON parsing) is not timed.
func benchServeAPI(ctx context.Context, scratch, bin string) {
	const records, clients = 10000, 50
	data := filepath.Join(scratch, "serve-api", "data")
	check(os.MkdirAll(data, 0o755))
	var imgs []map[string]any
	for i := range records {
		imgs = append(imgs, map[string]any{
			"id": fmt.Sprintf("00000000-0000-4000-8000-%012d", i), "created": "2026-11-25T04:22:46.783381",
			"name": fmt.Sprintf("image-%d", i), "arch": "x86_64", "metadata": map[string]string{"site": "x"},
			"link": map[string]string{"path": fmt.Sprintf("s3://boot-images/%012d/manifest.json", i), "etag": "0123456789abcdef0123456789abcdef", "type": "s3"},
		})
	}
	b, err := json.Marshal(imgs)
	check(err)
	check(os.WriteFile(filepath.Join(data, "v2.1_images.json"), b, 0o644))

	srv := startServe(ctx, bin, data)
	defer srv.stop()
	addr := srv.addr

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, DisableCompression: true}}
	base := "http://" + addr + "/v3/images"
	do := func(method, encoding string, body []byte) time.Duration {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, base, rd)
		check(err)
		req.Header.Set("Content-Type", "application/json")
		if encoding != "" {
			req.Header.Set("Accept-Encoding", encoding)
		}
		start := time.Now()
		resp, err := client.Do(req)
		check(err)
		_, err = io.Copy(io.Discard, resp.Body)
		check(err)
		resp.Body.Close()
		d := time.Since(start)
		if resp.StatusCode >= 300 {
			check(fmt.Errorf("%s %s = %d\n%s", method, base, resp.StatusCode, srv.stderr.String()))
		}
		return d
	}
	// load runs perClient requests on each of the clients and returns
	// the p50 and p99.
	load := func(perClient int, req func() time.Duration) (p50, p99 time.Duration) {
		var mu sync.Mutex
		var lat []time.Duration
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				for range perClient {
					d := req()
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		slices.Sort(lat)
		return lat[len(lat)/2], lat[len(lat)*99/100]
	}
	post := []byte(`{"name":"bench","metadata":{"key":"k","value":"v"}}`)
	kinds := []struct {
		name      string
		perClient int
		req       func() time.Duration
	}{
		{"list gzip", 10, func() time.Duration { return do("GET", "gzip", nil) }},
		{"list plain", 10, func() time.Duration { return do("GET", "", nil) }},
		{"post", 10, func() time.Duration { return do("POST", "", post) }},
	}
	p99s := map[string][]time.Duration{}
	do("GET", "gzip", nil) // warm: the first list encodes and compresses
	for round := range max(pairRuns, 3) {
		for _, k := range kinds {
			before := loadAvg()
			p50, p99 := load(k.perClient, k.req)
			p99s[k.name] = append(p99s[k.name], p99)
			fmt.Printf("serve-api round %d %-10s: %d requests, p50 %6.1f ms, p99 %6.1f ms (load %s → %s)\n", round+1, k.name,
				clients*k.perClient, ms(p50), ms(p99), before, loadAvg())
		}
	}
	hwm, err := readHWM("/proc/" + strconv.Itoa(srv.cmd.Process.Pid) + "/status")
	check(err)
	for _, k := range kinds {
		fmt.Printf("serve-api %s p99 (median of rounds): %.1f ms (goal < 20 ms)\n", k.name, ms(medianDuration(p99s[k.name])))
	}
	fmt.Printf("serve-api server peak RSS with %d+ records: %.1f MB (goal < 100 MB)\n", records, float64(hwm)/1024)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
