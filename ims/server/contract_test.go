package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/google/go-cmp/cmp"
)

// notInSpec are the statuses IMS (or imsbuild) sends that the OpenAPI file
// does not list for a route: Flask's 405 and 415, the 404 of an unknown id
// on routes that declare none, and imsbuild's 401 and 413. Their bodies are
// checked exactly instead.
var notInSpec = []int{http.StatusMethodNotAllowed, http.StatusUnsupportedMediaType, http.StatusUnauthorized, http.StatusRequestEntityTooLarge}

// contractDo validates every request and response against the IMS OpenAPI
// file (a copy in testdata). The known differences between IMS and its
// file, read from IMS's code (SPEC.md), are left out: /version answers an
// object, not a string; timestamps are naive (no zone), not RFC 3339.
func contractDo(t *testing.T, base string) func(*http.Request) *http.Response {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile("testdata/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// IMS dumps an unset link as null (SPEC §8), which the file does not
	// allow.
	doc.Components.Schemas["ArtifactLinkRecord"].Value.Nullable = true
	doc.Servers = openapi3.Servers{{URL: base}, {URL: base + "/apis/ims"}}
	// The file's unversioned aliases ($ref to the v2 paths) repeat
	// operation ids, which Validate rejects; the schemas are fine.
	if err := doc.Validate(context.Background()); err != nil && !strings.Contains(err.Error(), "have the same operation id") {
		t.Fatalf("openapi.yaml: %v", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}
	return func(req *http.Request) *http.Response {
		t.Helper()
		var reqBody []byte
		if req.Body != nil {
			reqBody, _ = io.ReadAll(req.Body)
			req.Body = io.NopCloser(bytes.NewReader(reqBody))
		}
		route, params, rerr := router.FindRoute(req)
		var in *openapi3filter.RequestValidationInput
		if rerr == nil {
			in = &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
			if err := openapi3filter.ValidateRequest(req.Context(), in); err != nil {
				t.Logf("note: %s %s: request outside the spec (sent on purpose in error cases): %v", req.Method, req.URL.Path, err)
			}
			req.Body = io.NopCloser(bytes.NewReader(reqBody))
		} else if !strings.Contains(rerr.Error(), routers.ErrPathNotFound.Error()) && !strings.Contains(rerr.Error(), routers.ErrMethodNotAllowed.Error()) {
			t.Fatalf("find route %s %s: %v", req.Method, req.URL, rerr)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if in == nil || slices.Contains(notInSpec, resp.StatusCode) || strings.HasSuffix(req.URL.Path, "/version") ||
			// The file gives one node's status the list's schema.
			strings.Contains(req.URL.Path, "/remote-build-nodes/status/") {
			return resp
		}
		header := resp.Header.Clone()
		if resp.StatusCode >= 400 {
			// IMS sends problem+json (SPEC §0); the file says
			// application/json.
			if ct := header.Get("Content-Type"); ct != contentProblem && resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%s %s → %d: Content-Type %q, want %q", req.Method, req.URL.Path, resp.StatusCode, ct, contentProblem)
			}
			header.Set("Content-Type", contentJSON)
		}
		out := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: in, Status: resp.StatusCode, Header: header,
			Body: io.NopCloser(bytes.NewReader(body)),
			Options: &openapi3filter.Options{MultiError: true, IncludeResponseStatus: false,
				ExcludeReadOnlyValidations: true},
		}
		if err := openapi3filter.ValidateResponse(req.Context(), out); err != nil {
			t.Errorf("%s %s → %d %s: response does not match the spec: %v", req.Method, req.URL.Path, resp.StatusCode, body, err)
		}
		return resp
	}
}

func init() {
	// IMS's timestamps are naive ISO 8601 (SPEC §0): accept them where the
	// OpenAPI file says date-time.
	openapi3.DefineStringFormatValidator("date-time", openapi3.NewRegexpFormatValidator(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})?$`))
}

// TestContract walks every route of IMS v3, v2 and the unversioned root,
// each also under /apis/ims, with requests and responses checked against
// the OpenAPI file and the key sets of SPEC §2.
func TestContract(t *testing.T) {
	e := newEnv(t)
	e.do = contractDo(t, e.url)

	for _, prefix := range []string{"", "/apis/ims"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			e.t = t
			v3 := prefix + "/v3"
			// Public keys.
			pk := e.must(201, "POST", v3+"/public-keys", map[string]any{"name": "k", "public_key": "ssh-ed25519 AAAA k"})
			wantKeys(t, pk, "id", "created", "name", "public_key")
			e.must(200, "GET", v3+"/public-keys/"+pk["id"].(string), nil)
			_, list := e.call("GET", v3+"/public-keys", nil)
			if n := len(decodeList(t, list)); n < 1 {
				t.Fatalf("list has %d keys", n)
			}
			// Recipes with a link.
			e.putObject("ims", "recipes/r1"+prefix+"/recipe.tgz", []byte("tgz"))
			rec := e.must(201, "POST", v3+"/recipes", map[string]any{
				"name": "r1", "recipe_type": "kiwi-ng", "linux_distribution": "sles15",
				"link":                map[string]any{"path": "s3://ims/recipes/r1" + prefix + "/recipe.tgz", "etag": "", "type": "s3"},
				"template_dictionary": []map[string]string{{"key": "A", "value": "1"}},
			})
			wantKeys(t, rec, "id", "created", "name", "recipe_type", "linux_distribution", "link", "arch", "require_dkms", "template_dictionary")
			if rec["arch"] != "x86_64" || rec["require_dkms"] != true {
				t.Errorf("recipe defaults: arch %v require_dkms %v, want x86_64 true", rec["arch"], rec["require_dkms"])
			}
			rid := rec["id"].(string)
			got := e.must(200, "PATCH", v3+"/recipes/"+rid, map[string]any{"arch": "aarch64", "require_dkms": false})
			if got["arch"] != "aarch64" || got["require_dkms"] != false {
				t.Errorf("patched recipe = %v", got)
			}
			// The same link again is a no-op; another is a conflict.
			e.must(200, "PATCH", v3+"/recipes/"+rid, map[string]any{"link": rec["link"]})
			e.must(409, "PATCH", v3+"/recipes/"+rid, map[string]any{"link": map[string]any{"path": "s3://ims/other", "type": "s3"}})
			// A duplicate link is a 422.
			e.must(422, "POST", v3+"/recipes", map[string]any{"name": "r2", "recipe_type": "kiwi-ng", "linux_distribution": "sles15", "link": rec["link"]})

			// Images.
			link := e.putImageArtifacts("img" + prefix)
			img := e.must(201, "POST", v3+"/images", map[string]any{"name": "i1", "link": link, "metadata": map[string]any{"key": "a", "value": "b"}})
			wantKeys(t, img, "id", "created", "name", "link", "arch", "metadata")
			iid := img["id"].(string)
			if diff := cmp.Diff(map[string]any{"a": "b"}, img["metadata"]); diff != "" {
				t.Errorf("metadata (-want +got):\n%s", diff)
			}
			got = e.must(200, "PATCH", v3+"/images/"+iid, map[string]any{"metadata": map[string]any{"operation": "set", "key": "c", "value": "d"}})
			if diff := cmp.Diff(map[string]any{"a": "b", "c": "d"}, got["metadata"]); diff != "" {
				t.Errorf("metadata after set (-want +got):\n%s", diff)
			}
			got = e.must(200, "PATCH", v3+"/images/"+iid, map[string]any{"metadata": map[string]any{"operation": "remove", "key": "a"}})
			if diff := cmp.Diff(map[string]any{"c": "d"}, got["metadata"]); diff != "" {
				t.Errorf("patched metadata (-want +got):\n%s", diff)
			}
			e.must(422, "PATCH", v3+"/images/"+iid, map[string]any{"name": "x"})
			bare := e.must(201, "POST", v3+"/images", map[string]any{"name": "bare"})
			if bare["link"] != nil || bare["arch"] != "x86_64" {
				t.Errorf("image defaults = %v", bare)
			}

			// Jobs: validated as IMS does, then 500 (no runner).
			e.must(400, "POST", v3+"/jobs", map[string]any{"job_type": "create", "artifact_id": "00000000-0000-4000-8000-000000000000", "public_key_id": pk["id"], "image_root_archive_name": "x"})
			e.must(400, "POST", v3+"/jobs", map[string]any{"job_type": "create", "artifact_id": rid, "public_key_id": pk["id"], "image_root_archive_name": "x", "ssh_containers": []any{map[string]any{"name": "a"}}})
			e.must(422, "POST", v3+"/jobs", map[string]any{"job_type": "build", "artifact_id": rid, "public_key_id": pk["id"], "image_root_archive_name": "x"})
			e.must(500, "POST", v3+"/jobs", map[string]any{"job_type": "customize", "artifact_id": iid, "public_key_id": pk["id"], "image_root_archive_name": "x"})
			_, jobs := e.call("GET", v3+"/jobs", nil)
			if string(jobs) != "[]\n" {
				t.Errorf("jobs after a 500 POST = %s, want none kept", jobs)
			}
			e.must(404, "GET", v3+"/jobs/"+iid, nil)
			e.must(204, "DELETE", v3+"/jobs?status=error&job_type=create&age=1d", nil)
			e.must(400, "DELETE", v3+"/jobs?status=bogus", nil)

			// Remote build nodes.
			node := e.must(201, "POST", v3+"/remote-build-nodes", map[string]any{"xname": "x3000c0s1b0n0"})
			wantKeys(t, node, "xname")
			e.must(200, "GET", v3+"/remote-build-nodes/x3000c0s1b0n0", nil)
			st := e.must(200, "GET", v3+"/remote-build-nodes/status/x3000c0s1b0n0", nil)
			if st["ableToRunJobs"] != false {
				t.Errorf("node status = %v, want ableToRunJobs false", st)
			}
			e.must(200, "GET", v3+"/remote-build-nodes/status", nil)
			e.must(204, "DELETE", v3+"/remote-build-nodes/x3000c0s1b0n0", nil)
			e.must(404, "GET", v3+"/remote-build-nodes/x3000c0s1b0n0", nil)
			e.must(404, "GET", prefix+"/remote-build-nodes", nil)

			// Soft delete, the deleted views, undelete, hard delete.
			for _, kind := range []struct{ name, id string }{{"recipes", rid}, {"images", iid}, {"public-keys", pk["id"].(string)}} {
				e.must(204, "DELETE", v3+"/"+kind.name+"/"+kind.id, nil)
				e.must(404, "GET", v3+"/"+kind.name+"/"+kind.id, nil)
				d := e.must(200, "GET", v3+"/deleted/"+kind.name+"/"+kind.id, nil)
				if _, ok := d["deleted"]; !ok {
					t.Errorf("deleted %s has no deleted time: %v", kind.name, d)
				}
				e.must(200, "GET", v3+"/deleted/"+kind.name, nil)
				e.must(422, "PATCH", v3+"/deleted/"+kind.name+"/"+kind.id, map[string]any{"operation": "delete"})
				e.must(204, "PATCH", v3+"/deleted/"+kind.name+"/"+kind.id, map[string]any{"operation": "undelete"})
				back := e.must(200, "GET", v3+"/"+kind.name+"/"+kind.id, nil)
				if _, ok := back["deleted"]; ok {
					t.Errorf("undeleted %s keeps its deleted time: %v", kind.name, back)
				}
				e.must(204, "DELETE", v3+"/"+kind.name+"/"+kind.id, nil)
				e.must(204, "DELETE", v3+"/deleted/"+kind.name+"/"+kind.id, nil)
				e.must(404, "GET", v3+"/deleted/"+kind.name+"/"+kind.id, nil)
			}
			e.must(204, "DELETE", v3+"/images", nil)
			e.must(204, "PATCH", v3+"/deleted/images", map[string]any{"operation": "undelete"})
			e.must(204, "DELETE", v3+"/deleted/images", nil)

			// v2 and the unversioned root: the same records, hard delete.
			for _, v := range []string{prefix + "/v2", prefix} {
				k := e.must(201, "POST", v+"/public-keys", map[string]any{"name": "k2", "public_key": "ssh-rsa AAAA"})
				e.must(200, "GET", v+"/public-keys/"+k["id"].(string), nil)
				e.must(204, "DELETE", v+"/public-keys/"+k["id"].(string), nil)
				e.must(404, "GET", v3+"/deleted/public-keys/"+k["id"].(string), nil)
				i := e.must(201, "POST", v+"/images", map[string]any{"name": "v2"})
				e.must(200, "PATCH", v+"/images/"+i["id"].(string), map[string]any{"arch": "aarch64"})
				e.must(204, "DELETE", v+"/images/"+i["id"].(string)+"?cascade=false", nil)
				e.must(200, "GET", v+"/jobs", nil)
				e.must(404, "GET", v+"/deleted/images", nil)
			}
			e.must(200, "GET", prefix+"/healthz/ready", nil)
			e.must(200, "GET", prefix+"/healthz/live", nil)
			if v := e.must(200, "GET", prefix+"/version", nil); v["version"] != "test" {
				t.Errorf("version = %v", v)
			}
		})
	}
}

func wantKeys(t *testing.T, m map[string]any, keys ...string) {
	t.Helper()
	got := keysOf(m)
	sort.Strings(got)
	sort.Strings(keys)
	if diff := cmp.Diff(keys, got); diff != "" {
		t.Errorf("keys of %v (-want +got):\n%s", m, diff)
	}
}

// TestErrorBodies checks the exact bodies of SPEC §0.
func TestErrorBodies(t *testing.T) {
	e := newEnv(t)
	img := e.must(201, "POST", "/v3/images", map[string]any{"name": "i", "link": e.putImageArtifacts("eb")})
	id := img["id"].(string)
	tests := []struct {
		name         string
		method, path string
		body         any
		status       int
		contentType  string
		want         string
	}{
		{"no input", "POST", "/v3/images", "{}", 400, contentProblem,
			`{"status": 400, "title": "Bad Request", "detail": "No input provided. Determine the specific information that is missing or invalid and then re-run the request with valid information."}`},
		{"unknown id", "GET", "/v3/images/nope", nil, 404, contentProblem,
			`{"status": 404, "title": "Not Found", "detail": "Requested resource does not exist. Re-run request with valid ID."}`},
		{"unknown url", "GET", "/v3/bogus", nil, 404, contentProblem,
			`{"status": 404, "title": "Not Found", "detail": "The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again."}`},
		{"trailing slash", "GET", "/v3/images/", nil, 404, contentProblem,
			`{"status": 404, "title": "Not Found", "detail": "The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again."}`},
		{"patch conflict", "PATCH", "/v3/images/" + id, map[string]any{"link": map[string]any{"path": "s3://boot-images/x/manifest.json", "type": "s3"}}, 409, contentProblem,
			`{"status": 409, "title": "Conflict", "detail": "Requested resource exists, but cannot be patched due to a patch conflict. Re-run request with valid input values."}`},
		{"validation", "POST", "/v3/images", map[string]any{"name": "", "bogus": 1}, 422, contentProblem,
			`{"status": 422, "title": "Unprocessable Entity", "detail": "Input data was understood, but failed validation. Re-run request with valid input values for the fields indicated in the response.", "errors": {"name": ["name field must not be blank"], "bogus": ["Unknown field."]}}`},
		{"method", "PUT", "/v3/images", "{}", 405, contentJSON,
			`{"message":"The method is not allowed for the requested URL.","status":405,"title":"Method Not Allowed","detail":"The method is not allowed for the requested URL."}`},
		{"not json", "POST", "/v3/images", "{", 400, contentJSON, `{"message":"` + messageBadJSON + `"}`},
		{"recipe enum", "POST", "/v3/recipes", map[string]any{"name": "r", "recipe_type": "kiwi", "linux_distribution": "sles15", "arch": "arm"}, 422, contentProblem,
			`{"status": 422, "title": "Unprocessable Entity", "detail": "` + detailInvalid + `", "errors": {"recipe_type": ["Must be one of: kiwi-ng, packer."], "arch": ["Must be one of: aarch64, x86_64."]}}`},
		{"missing", "POST", "/v3/recipes", map[string]any{"name": "r"}, 422, contentProblem,
			`{"status": 422, "title": "Unprocessable Entity", "detail": "` + detailInvalid + `", "errors": {"recipe_type": ["Missing data for required field."], "linux_distribution": ["Missing data for required field."]}}`},
		{"undelete empty", "PATCH", "/v3/deleted/images/" + id, nil, 400, contentProblem,
			`{"status": 400, "title": "Bad Request", "detail": "` + detailNoInput + `"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			status, body := e.call(tc.method, tc.path, tc.body)
			if status != tc.status {
				t.Fatalf("%s %s = %d %s, want %d", tc.method, tc.path, status, body, tc.status)
			}
			var got, want any
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("body %s: %v", body, err)
			}
			if err := json.Unmarshal([]byte(tc.want), &want); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
		})
	}
	// Content types.
	req, _ := http.NewRequest("GET", e.url+"/v3/images/nope", nil)
	resp := e.do(req)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != contentProblem {
		t.Errorf("404 Content-Type = %q, want %q", ct, contentProblem)
	}
}
