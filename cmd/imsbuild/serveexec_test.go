package main

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/imsbuild/imsbuild/ims/server/servertest"
	"github.com/imsbuild/imsbuild/internal/s3test"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// TestServeExecutor runs a create job through a real `imsbuild serve
// --executor local --cache-to s3://…` (a fake kiwi): the kiwi prepare and
// the pack are built by `imsbuild internal run-step` child processes
// through the remote cache, as Kubernetes Jobs would run them (the
// executor's own tests and jobs' TestCreateJobKubernetes cover the Jobs),
// and the job ends with its image; kubernetes_job names nothing, as no Job
// ran. The wiring of the flags is build's (openRemote, newExecutor).
func TestServeExecutor(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers; skipped in -short mode")
	}
	testutil.RequireRoot(t)
	testutil.FakeKiwi(t) // on PATH, which serve and its steps inherit
	srv := s3test.Start(t)
	srv.CreateBucket(t, "jobs-cache")
	// The remote cache's credentials, from the environment as build
	// takes them; serve passes them to its steps.
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	url := "s3://jobs-cache/serve?endpoint=" + srv.Endpoint + "&path_style=true&region=" + srv.Region
	repo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/repo/repodata/repomd.xml" {
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(repo.Close)

	dir := filepath.Join(t.TempDir(), "ims-data")
	client := &http.Client{Timeout: 10 * time.Second}
	p := startServe(t, client, "--data-dir", dir, "--executor", "local", "--cache-to", url)
	s3c := embeddedS3(t, p)
	xml := `<image schemaversion="7.5" name="x"><preferences><version>1.0.0</version></preferences>` +
		`<repository type="rpm-md"><source path="` + repo.URL + `/repo"/></repository></image>`
	u := &servertest.Client{T: t, HTTP: client, Base: p.url + "/v3"}
	rec, key := postRecipe(t, u, s3c, xml)
	id := u.Call(201, "POST", "/jobs", map[string]any{"job_type": "create", "artifact_id": rec, "public_key_id": key,
		"image_root_archive_name": "x"})["id"].(string)
	job, seen := u.WaitJob(id, 2*time.Minute, "success", "error")
	log := u.Log(id)
	if job["status"] != "success" {
		t.Fatalf("create job: %v (%v)\n%s\nserve stderr:\n%s", job["status"], seen, log, p.stderr)
	}
	for _, want := range []string{"image.image/prepare done remotely", "image.image done remotely"} {
		if !strings.Contains(log, want) {
			t.Errorf("job log has no %q: the step did not run through the executor\n%s", want, log)
		}
	}
	if job["resultant_image_id"] == nil || job["kubernetes_job"] != "" || job["kubernetes_service"] != "" {
		t.Errorf("job = %v; want an image, and no Kubernetes object named", job)
	}
	// The steps' results are in the remote cache.
	out, err := srv.Client(t).ListObjectsV2(t.Context(), &awss3.ListObjectsV2Input{Bucket: aws.String("jobs-cache"), Prefix: aws.String("serve/")})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Contents) == 0 {
		t.Error("the remote cache is empty; want the steps' outputs")
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	p.wait(t)
}
