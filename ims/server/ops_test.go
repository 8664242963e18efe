package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imsbuild/imsbuild/ims/server/store"
	"github.com/imsbuild/imsbuild/internal/s3test"
)

// TestServesIMSDataDir serves a data directory written in IMS's format
// (SPEC §2.7) and checks it is served as it is, and written back with only
// the change made.
func TestServesIMSDataDir(t *testing.T) {
	images := `[{"id": "cda5eaf9-1111-4a4a-8b8b-000000000001", "created": "2026-11-25T04:22:46.787814", "name": "i1", "link": null, "arch": "aarch64", "metadata": {"a": "b"}}, {"id": "cda5eaf9-1111-4a4a-8b8b-000000000002", "created": "2026-11-25T04:22:47", "name": "i2", "link": null, "arch": "x86_64", "metadata": {}}]`
	keys := `[{"id": "66db1862-fa14-44c6-ae4b-6a6cc8cdc34a", "created": "2026-11-25T04:22:46.1", "name": "k", "public_key": "ssh-rsa AAAA k"}]`
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, store.FileImages), []byte(images), 0o644)
	os.WriteFile(filepath.Join(dir, store.FilePublicKeys), []byte(keys), 0o644)
	s3s := s3test.Start(t)
	e := newEnvAt(t, s3s, dir)

	var want []map[string]any
	json.Unmarshal([]byte(images), &want)
	_, got := e.call("GET", "/apis/ims/v3/images", nil)
	if diff := cmp.Diff(want, decodeList(t, got)); diff != "" {
		t.Errorf("served images (-file +served):\n%s", diff)
	}
	e.must(200, "GET", "/v3/public-keys/66db1862-fa14-44c6-ae4b-6a6cc8cdc34a", nil)
	e.must(200, "PATCH", "/v3/images/cda5eaf9-1111-4a4a-8b8b-000000000002", map[string]any{"arch": "aarch64"})
	after, _ := os.ReadFile(filepath.Join(dir, store.FileImages))
	want[1]["arch"] = "aarch64"
	if diff := cmp.Diff(want, decodeList(t, after)); diff != "" {
		t.Errorf("images file after the PATCH (-want +got):\n%s", diff)
	}
	if k, _ := os.ReadFile(filepath.Join(dir, store.FilePublicKeys)); string(k) != keys {
		t.Errorf("public keys file rewritten though unchanged: %s", k)
	}
}

func TestLimitsAndPaths(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxBodyBytes = 1 << 10 })
	big := `{"name":"` + strings.Repeat("x", 2<<10) + `"}`
	if st, body := e.call("POST", "/v3/images", big); st != http.StatusRequestEntityTooLarge {
		t.Errorf("POST of 2 KiB with a 1 KiB limit = %d %s, want 413", st, body)
	}
	for _, p := range []string{"/v3/images/..%2F..%2Fetc%2Fpasswd", "/v3/images/%2e%2e", "/v3/images/a%00b", "/v3/images/" + strings.Repeat("a", 200),
		"/v3/images//x", "/v3/deleted/bogus", "/v3/deleted/images/x/y", "/apis/imsx/v3/images", "/v3", "/"} {
		if st, _ := e.call("GET", p, nil); st != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", p, st)
		}
	}
	if st, _ := e.call("POST", "/v3/images", nil); st != http.StatusBadRequest {
		t.Errorf("POST with no body = %d, want 400", st)
	}
	req, _ := http.NewRequest("POST", e.url+"/v3/images", strings.NewReader(`{"name":"x"}`))
	req.Header.Set("Content-Type", "text/plain")
	resp := e.do(req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("POST as text/plain = %d, want 415", resp.StatusCode)
	}
	if st, _ := e.call("POST", "/v3/images", `{"name":"x"} {"name":"y"}`); st != http.StatusBadRequest {
		t.Errorf("POST of two JSON values = %d, want 400", st)
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	e.must(201, "POST", "/v3/public-keys", map[string]any{"name": "k", "public_key": "p"})
	e.must(404, "GET", "/v3/images/nope", nil)
	_, body := e.call("GET", "/metrics", nil)
	for _, want := range []string{
		`imsbuild_serve_http_request_duration_seconds_count{code="201",method="POST",route="/v3/public-keys"} 1`,
		`imsbuild_serve_http_request_duration_seconds_count{code="404",method="GET",route="/v3/images/{id}"} 1`,
		`imsbuild_serve_records{kind="public_keys"} 1`,
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestToken(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Token = "tok" })
	for _, tc := range []struct {
		path, auth string
		want       int
	}{
		{"/healthz/ready", "", 200},
		{"/v3/images", "", 401},
		{"/v3/images", "Bearer nope", 401},
		{"/v3/images", "Basic dG9rOg==", 401},
		{"/v3/images", "Bearer tok", 200},
		{"/apis/ims/version", "Bearer tok", 200},
	} {
		req, _ := http.NewRequest("GET", e.url+tc.path, nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp := e.do(req)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET %s with %q = %d, want %d", tc.path, tc.auth, resp.StatusCode, tc.want)
		}
		if resp.StatusCode == 401 && resp.Header.Get("Content-Type") != contentProblem {
			t.Errorf("401 Content-Type = %q", resp.Header.Get("Content-Type"))
		}
	}
}

// TestJobRecords: job records as IMS keeps them (24 keys), PATCH by the job
// tooling, and DELETE with filters.
func TestJobRecords(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Runner = acceptRunner{c.Store} })
	key := e.must(201, "POST", "/v3/public-keys", map[string]any{"name": "k", "public_key": "p"})["id"].(string)
	img := e.must(201, "POST", "/v3/images", map[string]any{"name": "i", "arch": "aarch64", "link": e.putImageArtifacts("job")})["id"].(string)
	e.putObject("ims", "r/recipe.tgz", []byte("x"))
	rec := e.must(201, "POST", "/v3/recipes", map[string]any{"name": "r", "recipe_type": "kiwi-ng", "linux_distribution": "sles15", "require_dkms": false,
		"link": map[string]any{"path": "s3://ims/r/recipe.tgz", "type": "s3"}})["id"].(string)

	cj := e.must(201, "POST", "/v3/jobs", map[string]any{"job_type": "customize", "artifact_id": img, "public_key_id": key, "image_root_archive_name": "c"})
	wantKeys(t, cj, "id", "created", "job_type", "image_root_archive_name", "kernel_file_name", "initrd_file_name", "kernel_parameters_file_name",
		"status", "artifact_id", "public_key_id", "kubernetes_job", "kubernetes_service", "kubernetes_configmap", "kubernetes_pvc",
		"kubernetes_secret", "kubernetes_namespace", "remote_build_node", "ssh_containers", "enable_debug", "resultant_image_id",
		"build_env_size", "job_mem_size", "arch", "require_dkms")
	id := cj["id"].(string)
	for k, want := range map[string]any{"status": "creating", "arch": "aarch64", "kernel_file_name": "Image", "require_dkms": true,
		"build_env_size": 60.0, "job_mem_size": 8.0, "kubernetes_job": "cray-ims-" + id + "-customize", "resultant_image_id": nil} {
		if cj[k] != want {
			t.Errorf("customize job %s = %v, want %v", k, cj[k], want)
		}
	}
	sc := cj["ssh_containers"].([]any)[0].(map[string]any)
	if sc["name"] != "customize" || sc["jail"] != false || sc["status"] != "pending" {
		t.Errorf("ssh container = %v", sc)
	}
	crj := e.must(201, "POST", "/v3/jobs", map[string]any{"job_type": "create", "artifact_id": rec, "public_key_id": key, "image_root_archive_name": "n", "enable_debug": true})
	if crj["require_dkms"] != false || crj["kernel_file_name"] != "vmlinuz" || crj["ssh_containers"].([]any)[0].(map[string]any)["name"] != "debug" {
		t.Errorf("create job = %v", crj)
	}
	e.must(400, "POST", "/v3/jobs", map[string]any{"job_type": "create", "artifact_id": rec, "public_key_id": img, "image_root_archive_name": "n"})
	// The job log (an imsbuild route): the runner's, 404 when it has none.
	if code, body := e.call("GET", "/apis/ims/v3/jobs/"+id+"/log", nil); code != 200 || string(body) != "log of "+id+"\n" {
		t.Errorf("GET job log = %d %q", code, body)
	}
	e.must(404, "GET", "/v3/jobs/"+crj["id"].(string)+"/log", nil)
	e.must(404, "GET", "/v3/jobs/nope/log", nil)
	e.must(404, "GET", "/v3/jobs/"+id+"/logs", nil)
	e.must(405, "DELETE", "/v3/jobs/"+id+"/log", nil)
	got := e.must(200, "PATCH", "/jobs/"+id, map[string]any{"status": "packaging_artifacts", "resultant_image_id": img})
	if got["status"] != "packaging_artifacts" || got["resultant_image_id"] != img {
		t.Errorf("patched job = %v", got)
	}
	e.must(422, "PATCH", "/jobs/"+id, map[string]any{"status": "done"})
	e.must(204, "DELETE", "/v3/jobs?job_type=create&status=creating", nil)
	e.must(404, "GET", "/v3/jobs/"+crj["id"].(string), nil)
	e.must(200, "GET", "/v3/jobs/"+id, nil)
	e.must(204, "DELETE", "/v3/jobs?age=1d", nil) // younger than a day: kept
	e.must(200, "GET", "/v3/jobs/"+id, nil)
	e.must(400, "DELETE", "/v3/jobs?age=soon", nil)
	e.must(204, "DELETE", "/v3/jobs/"+id, nil)
	e.must(404, "DELETE", "/v3/jobs/"+id, nil)
}

func TestParseAge(t *testing.T) {
	for in, want := range map[string]string{"1d": "24h0m0s", "2w3d": "408h0m0s", "30m": "30m0s", "6H": "6h0m0s"} {
		d, err := parseAge(in)
		if err != nil || d.String() != want {
			t.Errorf("parseAge(%q) = %v, %v; want %s", in, d, err, want)
		}
	}
	for _, in := range []string{"", "1", "d", "1y", "1d-", "9999999d"} {
		if _, err := parseAge(in); err == nil {
			t.Errorf("parseAge(%q) succeeded", in)
		}
	}
}

func TestTimestamp(t *testing.T) {
	for _, tc := range []struct {
		in   time.Time
		want string
	}{
		{time.Date(2026, 11, 25, 4, 22, 46, 783381000, time.UTC), "2026-11-25T04:22:46.783381"},
		{time.Date(2026, 11, 25, 4, 22, 46, 0, time.UTC), "2026-11-25T04:22:46"},
		{time.Date(2026, 11, 25, 4, 22, 46, 500, time.UTC), "2026-11-25T04:22:46"},
		{time.Date(2026, 11, 25, 4, 22, 46, 100000000, time.UTC), "2026-11-25T04:22:46.100000"},
	} {
		if got := timestamp(tc.in); got != tc.want {
			t.Errorf("timestamp(%v) = %q, want %q", tc.in, got, tc.want)
		}
		if back, err := parseTimestamp(tc.want); err != nil || !back.Equal(tc.in.Truncate(time.Microsecond)) {
			t.Errorf("parseTimestamp(%q) = %v, %v", tc.want, back, err)
		}
	}
}
