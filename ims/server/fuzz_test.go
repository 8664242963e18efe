package server

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/imsbuild/imsbuild/ims/server/store"
)

// acceptRunner takes every job and runs none, so a valid job POST is a
// 201 under fuzzing.
type acceptRunner struct{ st *store.Store }

func (a acceptRunner) Start(_ context.Context, j store.Job) (store.Job, error) {
	return j, a.st.Jobs.Put(j)
}
func (acceptRunner) Cancel(string) {}
func (a acceptRunner) Log(id string) (io.ReadCloser, error) {
	if j, ok := a.st.Jobs.Get(id); ok && j.JobType == "customize" {
		return io.NopCloser(strings.NewReader("log of " + id + "\n")), nil
	}
	return nil, fs.ErrNotExist
}

// fuzzRoutes are the POST and PATCH routes; "{id}" is replaced by the
// fuzzed id, or by a real record's id when the fuzzed one is empty.
var fuzzRoutes = []struct{ method, path string }{
	{"POST", "/v3/recipes"}, {"POST", "/v3/images"}, {"POST", "/v3/public-keys"}, {"POST", "/v3/jobs"},
	{"POST", "/v3/remote-build-nodes"}, {"POST", "/recipes"}, {"POST", "/v2/images"},
	{"PATCH", "/v3/recipes/{id}"}, {"PATCH", "/v3/images/{id}"}, {"PATCH", "/v3/jobs/{id}"},
	{"PATCH", "/v3/deleted/recipes/{id}"}, {"PATCH", "/v3/deleted/images/{id}"}, {"PATCH", "/v3/deleted/public-keys/{id}"},
	{"PATCH", "/v3/deleted/images"}, {"PATCH", "/images/{id}"},
	{"GET", "/v3/images/{id}"}, {"DELETE", "/v3/images/{id}"}, {"GET", "/v3/remote-build-nodes/{id}"},
}

// FuzzRequests sends fuzzed JSON bodies and ids to every POST and PATCH
// route: no panic and no 5xx, whatever comes in.
func FuzzRequests(f *testing.F) {
	seeds := []string{
		`{"name":"r","recipe_type":"kiwi-ng","linux_distribution":"sles15","template_dictionary":[{"key":"a","value":"b"}],"require_dkms":"yes","arch":"aarch64"}`,
		`{"name":"i","link":{"path":"s3://boot-images/x/manifest.json","etag":"","type":"s3"},"metadata":{"key":"k","value":"v"}}`,
		`{"name":"i","metadata":{"a":"b","c":1}}`,
		`{"name":"k","public_key":"ssh-ed25519 AAAA"}`,
		`{"job_type":"customize","artifact_id":"{img}","public_key_id":"{key}","image_root_archive_name":"x","ssh_containers":[{"name":"c","jail":true}],"build_env_size":"5"}`,
		`{"job_type":"create","artifact_id":"{rec}","public_key_id":"{key}","image_root_archive_name":"x","enable_debug":true,"build_env_size":1e300}`,
		`{"xname":"x3000c0s1b0n0"}`, `{"xname":"../../etc"}`,
		`{"link":{"path":"s3:///","type":"s3"}}`, `{"metadata":{"operation":"set","key":"k"}}`,
		`{"status":"packaging_artifacts","resultant_image_id":"{img}"}`,
		`{"operation":"undelete"}`, `{"operation":null}`, `[]`, `null`, `"x"`, `{"a":{"b":[1,2,{"c":null}]}}`, `{`, ``,
		`{"name":"\u0000","recipe_type":"packer","linux_distribution":"centos7","link":null,"template_dictionary":null}`,
	}
	for i := range fuzzRoutes {
		for _, s := range seeds {
			f.Add(uint8(i), "", []byte(s))
		}
	}
	f.Add(uint8(8), "../images", []byte(`{"arch":"x86_64"}`))
	f.Add(uint8(15), "%2e%2e", []byte(nil))
	f.Add(uint8(17), "x3000c0s1b0n0/..", []byte(nil))

	e := newEnv(f, func(c *Config) { c.Runner = acceptRunner{c.Store} })
	key := e.must(201, "POST", "/v3/public-keys", map[string]any{"name": "k", "public_key": "ssh-ed25519 AAAA"})["id"].(string)
	img := e.must(201, "POST", "/v3/images", map[string]any{"name": "i", "link": e.putImageArtifacts("fz")})["id"].(string)
	e.putObject("ims", "r/recipe.tgz", []byte("x"))
	rec := e.must(201, "POST", "/v3/recipes", map[string]any{"name": "r", "recipe_type": "kiwi-ng", "linux_distribution": "sles15",
		"link": map[string]any{"path": "s3://ims/r/recipe.tgz", "type": "s3"}})["id"].(string)
	client := &http.Client{}

	f.Fuzz(func(t *testing.T, route uint8, id string, body []byte) {
		r := fuzzRoutes[int(route)%len(fuzzRoutes)]
		if id == "" {
			id = img
		}
		path := bytes.ReplaceAll([]byte(r.path), []byte("{id}"), []byte(url.PathEscape(id)))
		body = bytes.ReplaceAll(body, []byte("{img}"), []byte(img))
		body = bytes.ReplaceAll(body, []byte("{key}"), []byte(key))
		body = bytes.ReplaceAll(body, []byte("{rec}"), []byte(rec))
		req, err := http.NewRequest(r.method, e.url+string(path), bytes.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %s %q = %d %s", r.method, path, body, resp.StatusCode, data)
		}
	})
}
