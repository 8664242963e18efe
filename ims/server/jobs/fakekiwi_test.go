package jobs

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/internal/testutil"
)

// fakeRecipe is a recipe archive whose description names an rpm-md
// repository served by a test server, its config.xml an IMS template.
func fakeRecipe(t *testing.T, extra string) []byte {
	t.Helper()
	repo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/repo/repodata/repomd.xml" {
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(repo.Close)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		templateListFile: "template_files: [config.xml]\n",
		"config.xml": `<image schemaversion="7.5" name="fake"><!-- ` + extra + ` --><preferences><version>1.0.0</version></preferences>` +
			`<repository type="rpm-md" alias="{{ release }}"><source path="` + repo.URL + `/repo"/></repository></image>` + "\n",
	})
	out, err := exec.Command("tar", "-C", dir, "-czf", "-", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCreateJobFakeKiwi runs create jobs over HTTP with a fake kiwi: one
// that succeeds has its image; one whose kiwi fails ends in error with no
// image record; with enable_debug the failure opens the debug shell,
// which connection_info names, and a person ends it over real ssh.
func TestCreateJobFakeKiwi(t *testing.T) {
	testutil.RequireRoot(t)
	sshBin := testutil.RequireTool(t, "ssh")
	keygen := testutil.RequireTool(t, "ssh-keygen")
	testutil.FakeKiwi(t)
	e := newServeEnv(t, 2)
	keyFile := filepath.Join(t.TempDir(), "id_ed25519")
	if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-f", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, _ := os.ReadFile(keyFile + ".pub")
	key := e.Call(201, "POST", "/public-keys", map[string]any{"name": "k", "public_key": string(pub)})["id"].(string)

	good := e.registerRecipe("good", fakeRecipe(t, "ok"))
	id := e.Call(201, "POST", "/jobs", map[string]any{"job_type": "create", "artifact_id": good, "public_key_id": key, "image_root_archive_name": "debian-node"})["id"].(string)
	job, seen := e.WaitJob(id, 2*time.Minute, "success", "error")
	if job["status"] != "success" {
		t.Fatalf("create job: %v (%v)\n%s", job["status"], seen, e.Get("/jobs/"+id+"/log"))
	}
	checkImage(t, e, job, id)

	// The same recipe again: its artifacts are copied in S3 from the
	// first image, not uploaded (only the small SBOM, which no manifest
	// lists, is), and the image checks out as the first.
	id = e.Call(201, "POST", "/jobs", map[string]any{"job_type": "create", "artifact_id": good, "public_key_id": key, "image_root_archive_name": "debian-node"})["id"].(string)
	job, _ = e.WaitJob(id, 2*time.Minute, "success", "error")
	log := e.Get("/jobs/" + id + "/log")
	uploads := regexp.MustCompile(`(?m)^uploaded s3://\S+/(\S+) `).FindAllStringSubmatch(string(log), -1)
	if job["status"] != "success" || strings.Count(string(log), "copied in S3 from an earlier image") < 3 || len(uploads) != 1 || uploads[0][1] != "sbom.spdx.json" {
		t.Fatalf("second create job: %v; want every artifact copied in S3\n%s", job["status"], log)
	}
	checkImage(t, e, job, id)
	// Every step of the second job was a cache hit, and /metrics says so.
	metrics := e.metrics()
	if m := regexp.MustCompile(`imsbuild_serve_job_steps_total\{result="cached"\} (\d+)`).FindStringSubmatch(metrics); m == nil || m[1] == "0" {
		t.Errorf("/metrics has no cached steps after a second job of one recipe:\n%s", metrics)
	}
	if err := e.st.Images.Remove(job["resultant_image_id"].(string)); err != nil {
		t.Fatal(err)
	}

	bad := e.registerRecipe("bad", fakeRecipe(t, "FAIL"))
	id = e.Call(201, "POST", "/jobs", map[string]any{"job_type": "create", "artifact_id": bad, "public_key_id": key, "image_root_archive_name": "bad"})["id"].(string)
	job, _ = e.WaitJob(id, 2*time.Minute, "success", "error")
	log = e.Get("/jobs/" + id + "/log")
	if job["status"] != "error" || job["resultant_image_id"] != nil || !strings.Contains(string(log), "broken-pkg") {
		t.Errorf("failed create job: %v\n%s", job, log)
	}
	if n := e.st.Images.Len(); n != 1 {
		t.Errorf("%d image records after a failed job, want 1", n)
	}

	// enable_debug: the failed root is open over SSH until a person is done.
	job = e.Call(201, "POST", "/jobs", map[string]any{"job_type": "create", "artifact_id": bad, "public_key_id": key, "image_root_archive_name": "bad", "enable_debug": true})
	id = job["id"].(string)
	sc := job["ssh_containers"].([]any)[0].(map[string]any)
	if sc["name"] != "debug" || sc["connection_info"] == nil {
		t.Fatalf("debug job's ssh container in the POST answer = %v", sc)
	}
	// The shell must listen where the POST answer said: a client reads
	// connection_info once.
	posted := sc["connection_info"].(map[string]any)["customer_access"].(map[string]any)
	port := int(posted["port"].(float64))
	job, _ = e.WaitJob(id, 2*time.Minute, "waiting_on_user", "error", "success")
	if job["status"] != "waiting_on_user" {
		t.Fatalf("debug job: %v\n%s", job["status"], e.Get("/jobs/"+id+"/log"))
	}
	sc = job["ssh_containers"].([]any)[0].(map[string]any)
	if sc["status"] != "pending" { // IMS never changes it
		t.Errorf("debug job's ssh container status = %v, want pending", sc["status"])
	}
	ci := sc["connection_info"].(map[string]any)["customer_access"].(map[string]any)
	if int(ci["port"].(float64)) != port || ci["host"] != posted["host"] {
		t.Errorf("connection_info while waiting = %v, the POST answered %v", ci, posted)
	}
	m := regexp.MustCompile(`ssh -p (\d+) (\S+)@`).FindSubmatch(e.Get("/jobs/" + id + "/log"))
	if m == nil || string(m[1]) != strconv.Itoa(port) {
		t.Fatalf("the POST answered port %d, the log says %q", port, m)
	}
	out, err := exec.Command(sshBin, "-i", keyFile, "-p", strconv.Itoa(port), "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
		string(m[2])+"@"+ci["host"].(string), "cat /mnt/image/build/image-root/etc/half && pwd && touch /mnt/image/complete").CombinedOutput()
	// Touching complete ends the environment once this session has ended:
	// ssh gets the exit status.
	// IMS's layout (SPEC §6): the failed root at
	// /mnt/image/build/image-root, where the session starts, and the flag
	// in /mnt/image, outside the image.
	if err != nil || string(out) != "half-installed\n/mnt/image/build/image-root\n" {
		t.Fatalf("debug ssh: %v\n%s", err, out)
	}
	if !strings.Contains(string(e.Get("/jobs/"+id+"/log")), "the image is at /mnt/image/build/image-root") {
		t.Errorf("the job log does not say where the image is:\n%s", e.Get("/jobs/"+id+"/log"))
	}
	job, _ = e.WaitJob(id, time.Minute, "error", "success")
	if job["status"] != "error" || job["resultant_image_id"] != nil {
		t.Errorf("debug job after the shell: %v", job)
	}
}
