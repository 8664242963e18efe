package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
)

// TestServeJobKill9 kills a real imsbuild serve with SIGKILL while a create
// job runs (waiting for a repository that never answers) and checks that
// after a restart the job is error, its log says why, and its scratch
// directory is gone.
func TestServeJobKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers; skipped in -short mode")
	}
	repo := httptest.NewServer(http.NotFoundHandler()) // never up
	t.Cleanup(repo.Close)
	dir := filepath.Join(t.TempDir(), "ims-data")
	client := &http.Client{Timeout: 10 * time.Second}
	p := startServe(t, client, "--data-dir", dir)

	m := regexp.MustCompile(`embedded S3 \(versitygw\) at (\S+), credentials in (\S+)`).FindStringSubmatch(p.stdout.String())
	if m == nil {
		t.Fatalf("no embedded S3 in %q", p.stdout)
	}
	var cred struct {
		AccessKey string `json:"access_key"`
		SecretKey string `json:"secret_key"`
		Region    string `json:"region"`
	}
	b, err := os.ReadFile(m[2])
	if err != nil || json.Unmarshal(b, &cred) != nil {
		t.Fatalf("credentials: %v %s", err, b)
	}
	s3c := awss3.New(awss3.Options{BaseEndpoint: aws.String(m[1]), Region: cred.Region, UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(cred.AccessKey, cred.SecretKey, "")})
	recipe := t.TempDir()
	xml := `<image schemaversion="7.5" name="x"><repository type="rpm-md"><source path="` + repo.URL + `/repo"/></repository></image>`
	if err := os.WriteFile(filepath.Join(recipe, "config.xml"), []byte(xml), 0o644); err != nil {
		t.Fatal(err)
	}
	archive, err := exec.Command("tar", "-C", recipe, "-czf", "-", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s3c.PutObject(t.Context(), &awss3.PutObjectInput{Bucket: aws.String("ims"), Key: aws.String("recipes/x/recipe.tar.gz"),
		Body: bytes.NewReader(archive)}); err != nil {
		t.Fatal(err)
	}
	post := func(path, body string) map[string]any {
		t.Helper()
		resp, err := client.Post(p.url+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		var out map[string]any
		if resp.StatusCode != 201 || json.Unmarshal(data, &out) != nil {
			t.Fatalf("POST %s = %d %s", path, resp.StatusCode, data)
		}
		return out
	}
	rec := post("/v3/recipes", `{"name":"x","recipe_type":"kiwi-ng","linux_distribution":"sles15","link":{"path":"s3://ims/recipes/x/recipe.tar.gz","etag":"","type":"s3"}}`)["id"].(string)
	key := post("/v3/public-keys", `{"name":"k","public_key":"ssh-ed25519 AAAA k"}`)["id"].(string)
	job := post("/v3/jobs", `{"job_type":"create","artifact_id":"`+rec+`","public_key_id":"`+key+`","image_root_archive_name":"x"}`)["id"].(string)

	get := func(url string) (int, []byte) {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, data
	}
	status := func(url string) string {
		t.Helper()
		_, data := get(url + "/v3/jobs/" + job)
		var j struct{ Status string }
		_ = json.Unmarshal(data, &j)
		return j.Status
	}
	deadline := time.Now().Add(60 * time.Second)
	for status(p.url) != "waiting_for_repos" {
		if time.Now().After(deadline) {
			_, log := get(p.url + "/v3/jobs/" + job + "/log")
			t.Fatalf("job status %s, want waiting_for_repos\n%s", status(p.url), log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	work, _ := filepath.Glob(filepath.Join(dir, "cache", "work", "run-*"))
	if len(work) == 0 {
		t.Fatal("the running job has no scratch directory")
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait(t)

	p2 := startServe(t, client, "--data-dir", dir)
	if st := status(p2.url); st != "error" {
		t.Errorf("job after kill -9 and restart: %s, want error", st)
	}
	if code, log := get(p2.url + "/v3/jobs/" + job + "/log"); code != 200 || !strings.Contains(string(log), "waiting for repository") || !strings.Contains(string(log), "server stopped") {
		t.Errorf("job log after restart: %d\n%s", code, log)
	}
	for _, w := range work {
		if _, err := os.Stat(w); err == nil {
			t.Errorf("scratch directory %s of the killed job left", w)
		}
	}
	_ = p2.cmd.Process.Signal(syscall.SIGTERM)
	p2.wait(t)
}
