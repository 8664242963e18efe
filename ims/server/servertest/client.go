package servertest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"
)

// Client calls an IMS API as the cray CLI does, failing T on any surprise.
type Client struct {
	T    testing.TB
	Base string       // the API root: http://host:port/v3 or …/apis/ims/v3
	HTTP *http.Client // nil: http.DefaultClient
}

func (c *Client) http() *http.Client {
	if c.HTTP == nil {
		return http.DefaultClient
	}
	return c.HTTP
}

// Call sends body (nil: none) as JSON to Base+path and returns the JSON
// object answered. It fails unless the status is want and the answer is a
// JSON object; only a 204 may answer nothing (a nil map).
func (c *Client) Call(want int, method, path string, body any) map[string]any {
	c.T.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.T.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(c.T.Context(), method, c.Base+path, rd)
	if err != nil {
		c.T.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http().Do(req)
	if err != nil {
		c.T.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		c.T.Fatalf("%s %s = %d %s, want %d", method, path, resp.StatusCode, data, want)
	}
	var m map[string]any
	if len(data) == 0 && want == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(data, &m); err != nil || m == nil {
		c.T.Fatalf("%s %s = %d %s: not a JSON object", method, path, resp.StatusCode, data)
	}
	return m
}

// Get returns the body of GET Base+path, failing unless the status is 200.
func (c *Client) Get(path string) []byte {
	c.T.Helper()
	req, err := http.NewRequestWithContext(c.T.Context(), http.MethodGet, c.Base+path, nil)
	if err != nil {
		c.T.Fatal(err)
	}
	resp, err := c.http().Do(req)
	if err != nil {
		c.T.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		c.T.Fatalf("GET %s = %d %s, want 200", path, resp.StatusCode, b)
	}
	return b
}

// Log returns job id's log, or the error getting it: it is for failure
// messages, so it does not fail T itself.
func (c *Client) Log(id string) string {
	req, err := http.NewRequestWithContext(c.T.Context(), http.MethodGet, c.Base+"/jobs/"+id+"/log", nil)
	if err != nil {
		return err.Error()
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// WaitJob polls job id until its status is one of final and returns the
// record and the statuses seen, in order. It fails with the job's log
// after timeout.
func (c *Client) WaitJob(id string, timeout time.Duration, final ...string) (map[string]any, []string) {
	c.T.Helper()
	var seen []string
	deadline := time.Now().Add(timeout)
	for {
		j := c.Call(http.StatusOK, http.MethodGet, "/jobs/"+id, nil)
		st, ok := j["status"].(string)
		if !ok {
			c.T.Fatalf("job %s has no status: %v", id, j)
		}
		if len(seen) == 0 || seen[len(seen)-1] != st {
			seen = append(seen, st)
		}
		for _, f := range final {
			if st == f {
				return j, seen
			}
		}
		if time.Now().After(deadline) {
			c.T.Fatalf("job %s: status %q after %v (seen %v)\nlog:\n%s", id, st, timeout, seen, c.Log(id))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
