package servertest_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/ims/server/servertest"
	"github.com/imsbuild/imsbuild/ims/server/store"
)

// fatalT records the first Fatal instead of failing the test.
type fatalT struct {
	testing.TB
	msg string
}

func (f *fatalT) Helper() {}
func (f *fatalT) Fatal(a ...any) {
	f.msg = fmt.Sprint(a...)
	runtime.Goexit()
}
func (f *fatalT) Fatalf(format string, a ...any) {
	f.msg = fmt.Sprintf(format, a...)
	runtime.Goexit()
}

// fatal runs fn with a Client on a fatalT and returns what it failed with
// ("" when it did not).
func fatal(t *testing.T, base string, fn func(c *servertest.Client)) string {
	f := &fatalT{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(&servertest.Client{T: f, Base: base})
	}()
	<-done
	return f.msg
}

func TestClient(t *testing.T) {
	s := servertest.Start(t)
	c := &servertest.Client{T: t, Base: s.URL + "/v3"}
	key := c.Call(201, "POST", "/public-keys", map[string]any{"name": "k", "public_key": "ssh-ed25519 AAAA k"})
	id, _ := key["id"].(string)
	if got := c.Call(200, "GET", "/public-keys/"+id, nil); got["name"] != "k" || got["id"] != id {
		t.Errorf("GET the key = %v, want %v", got, key)
	}
	if b := c.Get("/public-keys"); !strings.Contains(string(b), id) {
		t.Errorf("GET /public-keys = %s, lacks %s", b, id)
	}

	for name, tc := range map[string]struct {
		fn   func(c *servertest.Client)
		want string // in the failure; "" for none
	}{
		"wrong status":  {func(c *servertest.Client) { c.Call(200, "GET", "/public-keys/nope", nil) }, "= 404"},
		"not an object": {func(c *servertest.Client) { c.Call(200, "GET", "/public-keys", nil) }, "not a JSON object"},
		"get 404":       {func(c *servertest.Client) { c.Get("/public-keys/nope") }, "want 200"},
		"delete 204":    {func(c *servertest.Client) { c.Call(204, "DELETE", "/public-keys/"+id, nil) }, ""},
	} {
		if got := fatal(t, s.URL+"/v3", tc.fn); (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: failed with %q, want %q", name, got, tc.want)
		}
	}

	// WaitJob returns at a final status with the statuses seen, and fails
	// at its timeout.
	if err := s.Store.Jobs.Put(store.Job{ID: "j1", JobType: "create", Status: "building_image"}); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		_ = s.Store.Jobs.Put(store.Job{ID: "j1", JobType: "create", Status: "success"})
	}()
	j, seen := c.WaitJob("j1", time.Minute, "success", "error")
	if j["status"] != "success" || strings.Join(seen, " ") != "building_image success" {
		t.Errorf("WaitJob = %v, seen %v", j["status"], seen)
	}
	got := fatal(t, s.URL+"/v3", func(c *servertest.Client) { c.WaitJob("j1", 300*time.Millisecond, "error") })
	if !strings.Contains(got, "job j1: status \"success\" after 300ms") {
		t.Errorf("WaitJob past its timeout failed with %q", got)
	}
}
