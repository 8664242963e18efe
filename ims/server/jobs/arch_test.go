package jobs

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/internal/testutil"
)

// TestCreateJobAarch64 runs an IMS create job of an aarch64 recipe with a
// fake kiwi on this x86_64 machine: the job takes the recipe's arch, the
// kernel name Image and require_dkms true (IMS forces it, whatever the
// request says); kiwi runs with --target-arch aarch64 under the emulator;
// the resultant image record is aarch64.
func TestCreateJobAarch64(t *testing.T) {
	testutil.RequireRoot(t)
	if out, err := exec.Command("uname", "-m").Output(); err != nil || strings.TrimSpace(string(out)) == "x86_64" {
		testutil.RequireQemuUser(t, "aarch64")
	}
	testutil.FakeKiwi(t)
	e := newServeEnv(t, 2)
	key := e.Call(201, "POST", "/public-keys", map[string]any{"name": "k", "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIstub k@example"})["id"].(string)
	rec := e.registerRecipe("arm", fakeRecipe(t, "ok"))
	e.Call(200, "PATCH", "/recipes/"+rec, map[string]any{"arch": "aarch64", "require_dkms": false})
	job := e.Call(201, "POST", "/jobs", map[string]any{"job_type": "create", "artifact_id": rec, "public_key_id": key,
		"image_root_archive_name": "debian-node", "require_dkms": false})
	if job["arch"] != "aarch64" || job["kernel_file_name"] != "Image" || job["require_dkms"] != true {
		t.Fatalf("job arch %v, kernel_file_name %v, require_dkms %v; want aarch64, Image, true", job["arch"], job["kernel_file_name"], job["require_dkms"])
	}
	id := job["id"].(string)
	job, seen := e.WaitJob(id, 2*time.Minute, "success", "error")
	log := string(e.Get("/jobs/" + id + "/log"))
	if job["status"] != "success" {
		t.Fatalf("create job: %v (%v)\n%s", job["status"], seen, log)
	}
	for _, want := range []string{"fake kiwi: --target-arch aarch64", "aarch64 binaries run emulated by "} {
		if !strings.Contains(log, want) {
			t.Errorf("job log lacks %q:\n%s", want, log)
		}
	}
	checkImage(t, e, job, id)
	if img := e.Call(200, "GET", "/images/"+job["resultant_image_id"].(string), nil); img["arch"] != "aarch64" {
		t.Errorf("resultant image record arch = %v, want aarch64", img["arch"])
	}
}
