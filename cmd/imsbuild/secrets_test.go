package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/imsbuild/imsbuild/ims"
)

// The secret of TestSensitiveValuesStaySecret; the image gets only its sha256.
const secretValue = "tok-3f9a7c1e55d2"

const secretBuild = `
variable "token" {
  type      = string
  sensitive = true
}
variable "ims_url" { type = string }

locals {
  conf = templatefile("app.conf.tpl", { token = var.token })
}

image "secret" {
  name = "busybox-secret"
  from = image.base
  customize {
    env    = { TOKEN = var.token }
    inline = <<-EOT
      echo "token is ${var.token}"
      echo "env token is $TOKEN"
      printf '%s' '${local.conf}' | sha256sum > /etc/app.conf.sha256
      [ "$TOKEN" = "${var.token}" ]
    EOT
  }
}

publish "dir" "secret" {
  images = [image.secret]
  path   = "out-secret"
}

publish "ims" "csm" {
  images   = [image.secret]
  endpoint = var.ims_url
  token    = var.token
}
`

// fakeIMS is an IMS API that wants the secret as its bearer token and
// keeps the bodies it was sent.
func fakeIMS(t *testing.T) (*httptest.Server, func() []byte) {
	var mu sync.Mutex
	var bodies bytes.Buffer
	var records []ims.ImageRecord
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+secretValue {
			http.Error(w, "bad token", http.StatusUnauthorized)
			return
		}
		body, _ := io.ReadAll(r.Body)
		bodies.Write(body)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/v3/images":
			json.NewEncoder(w).Encode(records)
		case r.Method == http.MethodPost && r.URL.Path == "/v3/images":
			var rec ims.ImageRecord
			if err := json.Unmarshal(body, &rec); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			rec.ID = fmt.Sprintf("00000000-0000-4000-8000-%012d", len(records))
			records = append(records, rec)
			w.WriteHeader(http.StatusCreated)
			json.NewEncoder(w).Encode(rec)
		case r.Method == http.MethodPatch && strings.HasPrefix(r.URL.Path, "/v3/images/"):
			// publish "ims" links the record it created once the image is uploaded.
			for i := range records {
				if "/v3/images/"+records[i].ID == r.URL.Path {
					if err := json.Unmarshal(body, &records[i]); err != nil {
						http.Error(w, err.Error(), http.StatusBadRequest)
						return
					}
					json.NewEncoder(w).Encode(records[i])
					return
				}
			}
			http.NotFound(w, r)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, func() []byte {
		mu.Lock()
		defer mu.Unlock()
		if len(records) == 0 {
			t.Fatal("IMS got no image record")
		}
		b, _ := json.Marshal(records)
		return append(bodies.Bytes(), b...)
	}
}

// TestSensitiveValuesStaySecret builds with a sensitive variable in an
// inline script, a script's environment, a templatefile() and an IMS
// token, and finds the value nowhere: not in the cache (key preimages,
// logs, records), the output, --json, plan --explain, the published files
// or what IMS received.
func TestSensitiveValuesStaySecret(t *testing.T) {
	dir := example(t)
	ims, imsBodies := fakeIMS(t)
	for name, text := range map[string]string{
		"secret.ims.hcl": secretBuild,
		"app.conf.tpl":   "[auth]\ntoken = ${token}\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	keys := filepath.Join(dir, "keys")
	encryptedKey(t, keys)
	env := []string{"IMSBUILD_VAR_token=" + secretValue, "IMSBUILD_VAR_ims_url=" + ims.URL, "COSIGN_PASSWORD=" + signingPassword}
	var outputs []string
	run := func(want int, args ...string) result {
		t.Helper()
		r := imsbuildEnv(t, dir, env, args...)
		if r.code != want {
			t.Fatalf("imsbuild %s: exit %d, want %d\n%s\n%s", strings.Join(args, " "), r.code, want, r.stdout, r.stderr)
		}
		outputs = append(outputs, r.stdout, r.stderr)
		return r
	}
	r := run(0, "build", "--json", "--signing-key", filepath.Join(keys, "cosign.key"), ".")
	if got := events(t, r.stdout); got["image.secret"] != "done" || got["publish.ims.csm"] != "done" {
		t.Fatalf("build: %v, want image.secret and publish.ims.csm done\n%s", got, r.stdout)
	}
	for _, want := range []string{`"line":"token is (sensitive value)"`, `"line":"env token is (sensitive value)"`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("build --json =\n%s\nwant a log event %s", r.stdout, want)
		}
	}
	// Stable keys: the HMAC key of the cache stays.
	r = run(0, "build", ".")
	if !strings.Contains(r.stdout, "0 built, 3 cached") {
		t.Errorf("second build:\n%s\nwant every image cached", r.stdout)
	}
	run(0, "plan", "--explain", ".")
	// A changed secret changes the key, and explain says where without it.
	env[0] = "IMSBUILD_VAR_token=" + secretValue + "x"
	r = run(0, "plan", "--explain", "--json", ".")
	if !strings.Contains(r.stdout, `customize[0].env.TOKEN changed (hmac-sha256:`) {
		t.Errorf("plan --explain after a new token:\n%s\nwant the env change as HMACs", r.stdout)
	}
	env[0] = "IMSBUILD_VAR_token=" + secretValue
	// A diagnostic shows the expression's values: not this one.
	bad := strings.Replace(secretBuild, `token    = var.token`, `token    = var.token + 1`, 1)
	if err := os.WriteFile(filepath.Join(dir, "secret.ims.hcl"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	r = run(2, "validate", ".")
	if !strings.Contains(r.stderr, "with var.token as (sensitive value).") {
		t.Errorf("validate:\n%s\nwant var.token as (sensitive value)", r.stderr)
	}

	for i, out := range outputs {
		if strings.Contains(out, secretValue) {
			t.Errorf("output %d shows the secret:\n%s", i, out)
		}
	}
	if bytes.Contains(imsBodies(), []byte(secretValue)) {
		t.Error("IMS records hold the secret")
	}
	cacheDir := filepath.Join(dir, ".imsbuild", "cache")
	signed := 0
	for _, root := range []string{cacheDir, filepath.Join(dir, "out"), filepath.Join(dir, "out-secret")} {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				t.Fatal(err)
			}
			if !d.Type().IsRegular() {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(b, []byte(secretValue)) {
				t.Errorf("%s holds the secret", p)
			}
			if strings.HasSuffix(p, ".jsonl") { // the provenance: its statement is base64
				var env struct{ Payload string }
				if err := json.Unmarshal(b, &env); err != nil {
					t.Fatalf("%s: %v", p, err)
				}
				st, _ := base64.StdEncoding.DecodeString(env.Payload)
				if bytes.Contains(st, []byte(secretValue)) || !bytes.Contains(st, []byte(`"token":"(sensitive value)"`)) {
					t.Errorf("%s: the statement holds the secret, or not the redacted variable:\n%s", p, st)
				}
				signed++
			}
			return nil
		})
	}
	if signed != 4 {
		t.Errorf("%d published provenances, want one beside each of the 4 published image folders (base, compute, secret, and secret again under its IMS record id)", signed)
	}
	assertNoSecrets(t, keys, signingPassword, strings.Join(outputs, "\n"), dir)
	// Owner-only: the cache, its records and logs.
	modes := map[string]os.FileMode{cacheDir: 0o700 | fs.ModeDir}
	for _, pattern := range []string{"actions/*.json", "steps/*", "logs/*.log", "hmac.key", "provenance/*.json"} {
		matches, _ := filepath.Glob(filepath.Join(cacheDir, pattern))
		if len(matches) == 0 {
			t.Errorf("no %s in the cache", pattern)
		}
		for _, m := range matches {
			modes[m] = 0o600
		}
	}
	for p, want := range modes {
		if fi, err := os.Stat(p); err != nil || fi.Mode() != want {
			t.Errorf("mode of %s = %v (%v), want %v", p, fi.Mode(), err, want)
		}
	}
}
