package imsapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/imsbuild/imsbuild/ims"
)

const testToken = "test-token-1234"

// imsServer is a small in-memory IMS (v3 and v2 images and recipes) that
// validates requests as the spec says and answers RFC 7807 problem details.
type imsServer struct {
	*httptest.Server

	mu       sync.Mutex
	images   []ims.ImageRecord
	recipes  []ims.RecipeRecord
	fail     map[string]int // "METHOD /path" → answer the next N with 500
	failLate map[string]int // "METHOD /path" → do the next N, then answer 500
	requests map[string]int // "METHOD /path" → count
}

func newIMSServer(t *testing.T) *imsServer {
	t.Helper()
	s := &imsServer{images: []ims.ImageRecord{}, recipes: []ims.RecipeRecord{}, fail: map[string]int{}, failLate: map[string]int{}, requests: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// failNext makes the next n requests of "METHOD /path" fail with 500;
// late makes them succeed first (the record is created) and answer 500.
func (s *imsServer) failNext(key string, n int, late bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if late {
		s.failLate[key] = n
	} else {
		s.fail[key] = n
	}
}

func (s *imsServer) count(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[key]
}

func (s *imsServer) imageRecords() []ims.ImageRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.images)
}

func (s *imsServer) recipeRecords() []ims.RecipeRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.recipes)
}

func problem(w http.ResponseWriter, status int, detail string, fields map[string]any) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type": "about:blank", "title": http.StatusText(status), "status": status, "detail": detail, "errors": fields,
	})
}

func (s *imsServer) serve(w http.ResponseWriter, r *http.Request) {
	key := r.Method + " " + r.URL.Path
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests[key]++
	if r.Header.Get("Authorization") != "Bearer "+testToken {
		problem(w, http.StatusUnauthorized, "Invalid or expired token", nil)
		return
	}
	if s.fail[key] > 0 {
		s.fail[key]--
		problem(w, http.StatusInternalServerError, "An internal error occurred", nil)
		return
	}
	rw := w
	if s.failLate[key] > 0 {
		s.failLate[key]--
		rw = discard{w.Header()} // do the work, then answer 500
		defer problem(w, http.StatusInternalServerError, "lost the answer", nil)
	}
	var collection string
	for _, v := range []string{"/v3/", "/v2/"} {
		if c, ok := strings.CutPrefix(r.URL.Path, v); ok {
			collection = c
		}
	}
	switch {
	case collection == "images" && r.Method == http.MethodGet:
		writeJSON(rw, http.StatusOK, s.images)
	case collection == "images" && r.Method == http.MethodPost:
		s.postImage(rw, r)
	case collection == "recipes" && r.Method == http.MethodGet:
		writeJSON(rw, http.StatusOK, s.recipes)
	case collection == "recipes" && r.Method == http.MethodPost:
		s.postRecipe(rw, r)
	case collection == "images" || collection == "recipes":
		problem(rw, http.StatusMethodNotAllowed, "The method is not allowed for the requested URL.", nil)
	default:
		problem(rw, http.StatusNotFound, "The requested URL was not found on the server.", nil)
	}
}

// discard is a ResponseWriter that drops the answer.
type discard struct{ h http.Header }

func (d discard) Header() http.Header         { return d.h }
func (d discard) Write(b []byte) (int, error) { return len(b), nil }
func (d discard) WriteHeader(int)             {}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// decodeBody reads a JSON object, answering 400 when there is none.
func decodeBody(w http.ResponseWriter, r *http.Request) (map[string]any, bool) {
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		problem(w, http.StatusBadRequest, "No input provided. Content-Type must be application/json.", nil)
		return nil, false
	}
	var body map[string]any
	dec := json.NewDecoder(r.Body)
	dec.UseNumber()
	if err := dec.Decode(&body); err != nil || body == nil {
		problem(w, http.StatusBadRequest, "No input provided. Determine the specific information that is missing or invalid and then re-run the request with valid information.", nil)
		return nil, false
	}
	return body, true
}

// validator collects field errors as IMS (marshmallow) reports them.
type validator map[string]any

func (v validator) str(body map[string]any, field string, required bool, enum ...string) string {
	x, ok := body[field]
	if !ok {
		if required {
			v[field] = []string{"Missing data for required field."}
		}
		return ""
	}
	s, ok := x.(string)
	switch {
	case !ok:
		v[field] = []string{"Not a valid string."}
	case required && s == "":
		v[field] = []string{"Shorter than minimum length 1."}
	case len(enum) > 0 && !slices.Contains(enum, s):
		v[field] = []string{"Must be one of: " + strings.Join(enum, ", ") + "."}
	}
	return s
}

func (v validator) link(body map[string]any) *ims.Link {
	x, ok := body["link"]
	if !ok {
		return nil
	}
	m, ok := x.(map[string]any)
	if !ok {
		v["link"] = []string{"Not a valid mapping type."}
		return nil
	}
	lv := validator{}
	l := &ims.Link{Path: lv.str(m, "path", true), Etag: lv.str(m, "etag", false), Type: lv.str(m, "type", true, "s3")}
	for k := range m {
		if k != "path" && k != "etag" && k != "type" {
			lv[k] = []string{"Unknown field."}
		}
	}
	if len(lv) > 0 {
		v["link"] = map[string]any(lv)
	}
	return l
}

func (v validator) unknown(body map[string]any, allowed ...string) {
	for k := range body {
		if !slices.Contains(allowed, k) {
			v[k] = []string{"Unknown field."}
		}
	}
}

func (s *imsServer) postImage(w http.ResponseWriter, r *http.Request) {
	body, ok := decodeBody(w, r)
	if !ok {
		return
	}
	v := validator{}
	v.unknown(body, "name", "link", "arch", "metadata")
	rec := ims.ImageRecord{
		ID:      uuid.NewString(),
		Created: time.Now().UTC().Format(time.RFC3339),
		Name:    v.str(body, "name", true),
		Link:    v.link(body),
		Arch:    v.str(body, "arch", false, "aarch64", "x86_64"),
	}
	if rec.Arch == "" {
		rec.Arch = "x86_64"
	}
	if m, ok := body["metadata"]; ok {
		mm, ok := m.(map[string]any)
		if !ok {
			v["metadata"] = []string{"Not a valid mapping type."}
		}
		rec.Metadata = map[string]string{}
		for k, x := range mm {
			if s, ok := x.(string); ok {
				rec.Metadata[k] = s
			} else {
				v["metadata"] = []string{"Not a valid string."}
			}
		}
	}
	if len(v) > 0 {
		problem(w, http.StatusUnprocessableEntity, "Input data was understood, but failed validation. Re-run request with valid input values for the fields indicated in the response.", v)
		return
	}
	if rec.Link != nil {
		for _, o := range s.images {
			if o.Link != nil && o.Link.Path == rec.Link.Path {
				problem(w, http.StatusUnprocessableEntity, fmt.Sprintf("An image record already exists with the link path %s.", rec.Link.Path), nil)
				return
			}
		}
	}
	s.images = append(s.images, rec)
	writeJSON(w, http.StatusCreated, rec)
}

func (s *imsServer) postRecipe(w http.ResponseWriter, r *http.Request) {
	body, ok := decodeBody(w, r)
	if !ok {
		return
	}
	v := validator{}
	v.unknown(body, "name", "recipe_type", "linux_distribution", "link", "arch", "require_dkms", "template_dictionary")
	rec := ims.RecipeRecord{
		ID:                uuid.NewString(),
		Created:           time.Now().UTC().Format(time.RFC3339),
		Name:              v.str(body, "name", true),
		RecipeType:        v.str(body, "recipe_type", true, "kiwi-ng", "packer"),
		LinuxDistribution: v.str(body, "linux_distribution", true, "sles12", "sles15", "centos7"),
		Link:              v.link(body),
		Arch:              v.str(body, "arch", false, "aarch64", "x86_64"),
	}
	if d, ok := body["require_dkms"]; ok {
		b, ok := d.(bool)
		if !ok {
			v["require_dkms"] = []string{"Not a valid boolean."}
		}
		rec.RequireDKMS = b
	}
	if td, ok := body["template_dictionary"]; ok {
		raw, _ := json.Marshal(td)
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec.TemplateDictionary); err != nil {
			v["template_dictionary"] = []string{err.Error()}
		}
	}
	if len(v) > 0 {
		problem(w, http.StatusUnprocessableEntity, "Input data was understood, but failed validation. Re-run request with valid input values for the fields indicated in the response.", v)
		return
	}
	s.recipes = append(s.recipes, rec)
	writeJSON(w, http.StatusCreated, rec)
}
