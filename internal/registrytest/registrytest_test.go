package registrytest

import (
	"net"
	"net/http"
	"testing"
	"time"
)

func TestStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts docker-registry")
	}
	var host string
	t.Run("serves", func(t *testing.T) {
		r := Start(t)
		host = r.Host
		client := &http.Client{Timeout: 5 * time.Second}
		resp, err := client.Get(r.URL() + "/v2/_catalog")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /v2/_catalog = %s, want 200", resp.Status)
		}
	})
	if host == "" {
		return
	}
	// The subtest's cleanup stopped the registry: the port must be closed.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", host, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepts connections after cleanup", host)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStartTwo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts docker-registry")
	}
	a, b := Start(t), Start(t)
	if a.Host == b.Host || a.Dir == b.Dir {
		t.Errorf("two registries share host or dir: %+v %+v", a, b)
	}
}
