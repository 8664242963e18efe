package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLoad runs 50 clients doing list, create, get, patch and delete for a
// bounded time against a store of 2,000 images: no 5xx, and every record
// the server acknowledged and did not delete is there at the end.
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test skipped in -short mode")
	}
	e := newEnv(t)
	for i := range 2000 {
		if err := e.st.Images.Put(imageRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	const clients = 50
	duration := 10 * time.Second
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: 30 * time.Second}
	var requests, fives atomic.Int64
	var mu sync.Mutex
	kept := map[string]bool{}
	var firstErr atomic.Value
	do := func(method, path string, body any) (int, []byte) {
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, e.url+path, rd)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := client.Do(req)
		if err != nil {
			firstErr.CompareAndSwap(nil, err)
			return 0, nil
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		requests.Add(1)
		if resp.StatusCode >= 500 {
			fives.Add(1)
			firstErr.CompareAndSwap(nil, fmt.Errorf("%s %s = %d %s", method, path, resp.StatusCode, data))
		}
		return resp.StatusCode, data
	}
	deadline := time.Now().Add(duration)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				switch i % 5 {
				case 0:
					do("GET", "/v3/images", nil)
				default:
					st, data := do("POST", "/v3/images", map[string]any{"name": fmt.Sprintf("c%d-%d", c, i), "metadata": map[string]string{"k": "v"}})
					if st != 201 {
						continue
					}
					var rec map[string]any
					_ = json.Unmarshal(data, &rec)
					id := rec["id"].(string)
					do("GET", "/v3/images/"+id, nil)
					do("PATCH", "/v3/images/"+id, map[string]any{"metadata": map[string]any{"operation": "set", "key": "x", "value": "y"}})
					if i%2 == 0 {
						if st, _ := do("DELETE", "/v3/images/"+id, nil); st == 204 {
							continue
						}
					}
					mu.Lock()
					kept[id] = true
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if err := firstErr.Load(); err != nil {
		t.Errorf("first failure: %v", err)
	}
	t.Logf("%d requests in %v from %d clients (%.0f/s), %d 5xx", requests.Load(), duration, clients, float64(requests.Load())/duration.Seconds(), fives.Load())
	if fives.Load() != 0 {
		t.Errorf("%d responses were 5xx", fives.Load())
	}
	onDisk, err := readFile(e.dir, "v2.1_images.json")
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, r := range decodeList(t, onDisk) {
		ids[r["id"].(string)] = true
	}
	for id := range kept {
		if !ids[id] {
			t.Errorf("acknowledged image %s is not in the data file", id)
		}
	}
}
