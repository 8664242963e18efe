package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/imsbuild/imsbuild/ims/server/servertest"
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

	s3c := embeddedS3(t, p)
	xml := `<image schemaversion="7.5" name="x"><repository type="rpm-md"><source path="` + repo.URL + `/repo"/></repository></image>`
	u := &servertest.Client{T: t, HTTP: client, Base: p.url + "/v3"}
	rec, key := postRecipe(t, u, s3c, xml)
	job := u.Call(201, "POST", "/jobs", map[string]any{"job_type": "create", "artifact_id": rec, "public_key_id": key,
		"image_root_archive_name": "x"})["id"].(string)
	if j, seen := u.WaitJob(job, 60*time.Second, "waiting_for_repos", "error", "success"); j["status"] != "waiting_for_repos" {
		t.Fatalf("job status %v (seen %v), want waiting_for_repos\n%s", j["status"], seen, u.Log(job))
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
	u2 := &servertest.Client{T: t, HTTP: client, Base: p2.url + "/v3"}
	if st := u2.Call(200, "GET", "/jobs/"+job, nil)["status"]; st != "error" {
		t.Errorf("job after kill -9 and restart: %v, want error", st)
	}
	if log := u2.Get("/jobs/" + job + "/log"); !strings.Contains(string(log), "waiting for repository") || !strings.Contains(string(log), "server stopped") {
		t.Errorf("job log after restart:\n%s", log)
	}
	for _, w := range work {
		if _, err := os.Stat(w); err == nil {
			t.Errorf("scratch directory %s of the killed job left", w)
		}
	}
	_ = p2.cmd.Process.Signal(syscall.SIGTERM)
	p2.wait(t)
}

// postRecipe stores a kiwi-ng recipe of one config.xml in serve's
// embedded S3 and registers it and a public key through the IMS API; it
// returns their ids, ready for a create job.
func postRecipe(t *testing.T, u *servertest.Client, s3c *awss3.Client, xml string) (recipe, key string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.xml"), []byte(xml), 0o644); err != nil {
		t.Fatal(err)
	}
	archive, err := exec.Command("tar", "-C", dir, "-czf", "-", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s3c.PutObject(t.Context(), &awss3.PutObjectInput{Bucket: aws.String("ims"), Key: aws.String("recipes/x/recipe.tar.gz"),
		Body: bytes.NewReader(archive)}); err != nil {
		t.Fatal(err)
	}
	recipe = u.Call(201, "POST", "/recipes", map[string]any{"name": "x", "recipe_type": "kiwi-ng", "linux_distribution": "sles15",
		"link": map[string]any{"path": "s3://ims/recipes/x/recipe.tar.gz", "etag": "", "type": "s3"}})["id"].(string)
	key = u.Call(201, "POST", "/public-keys", map[string]any{"name": "k", "public_key": "ssh-ed25519 AAAA k"})["id"].(string)
	return recipe, key
}
