package jobs

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imsbuild/imsbuild/executor/localproc"
	"github.com/imsbuild/imsbuild/internal/s3test"
)

// TestCustomizeJobKubernetes runs a customize job through the IMS API with
// the Kubernetes executor on a fake cluster whose pods run the step in
// this process: the job's SSH environment opens in the step's pod; the
// record goes waiting_on_user with connection_info naming the Service the
// executor made (cluster.local: its DNS name, port 22; customer_access:
// its cluster address, port 22) and kubernetes_job, kubernetes_service
// and kubernetes_namespace naming the Job and Service. The test reaches
// the pod's sshd as kube-proxy would (the Service's target port on
// loopback) with the real ssh client, changes the image in IMS's layout
// and touches complete: the job succeeds, its image has the change, and
// the Service is gone. So does a jailed job; a job whose user touches
// the failed file ends in error without an image. A last job, deleted while it waits, leaves no
// Job, pod or Service, and its sshd stops.
func TestCustomizeJobKubernetes(t *testing.T) {
	var cluster *fakeCluster
	e := newCustEnvWith(t, func(cfg *Config, s3s *s3test.Server) {
		remote, url := kubeRemote(t, s3s)
		cluster = newFakeCluster(t, remote, url)
		cfg.Executor, cfg.Remote, cfg.RemoteURL = newKubeExecutor(t, cluster), remote, url
	})
	post := func(name string, jail bool) string {
		rec := e.Call(http.StatusCreated, http.MethodPost, "/jobs", map[string]any{
			"job_type": "customize", "artifact_id": e.parent, "public_key_id": e.keyID,
			"image_root_archive_name": name, "ssh_containers": []map[string]any{{"name": "customize", "jail": jail}},
		})
		if ci := rec["ssh_containers"].([]any)[0].(map[string]any)["connection_info"]; ci != nil {
			t.Errorf("POST answered connection_info %v; want none before the pod's Service exists", ci)
		}
		return rec["id"].(string)
	}
	// waiting checks the record of a job waiting on its user and returns
	// the port its pod's sshd listens on (the Service's target port).
	waiting := func(id string) int {
		t.Helper()
		rec := e.waitJob(id, "waiting_on_user")
		jobs, _ := cluster.created()
		name := jobs[len(jobs)-1]
		if rec["kubernetes_job"] != name || rec["kubernetes_service"] != name || rec["kubernetes_namespace"] != "ims" {
			t.Errorf("kubernetes_job %v, kubernetes_service %v, kubernetes_namespace %v; want the Job and Service %s in ims",
				rec["kubernetes_job"], rec["kubernetes_service"], rec["kubernetes_namespace"], name)
		}
		ci := rec["ssh_containers"].([]any)[0].(map[string]any)["connection_info"].(map[string]any)
		cl, ca := ci["cluster.local"].(map[string]any), ci["customer_access"].(map[string]any)
		if cl["host"] != name+".ims.svc.cluster.local" || cl["port"] != 22.0 || ca["host"] != clusterIP || ca["port"] != 22.0 {
			t.Errorf("connection_info %v; want cluster.local %s.ims.svc.cluster.local:22, customer_access %s:22", ci, name, clusterIP)
		}
		svc, err := cluster.cs.CoreV1().Services("ims").Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the job's Service: %v", err)
		}
		if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 22 {
			t.Fatalf("Service ports %v, want 22 to the pod's sshd", svc.Spec.Ports)
		}
		return svc.Spec.Ports[0].TargetPort.IntValue()
	}

	posted := time.Now()
	id := post("custom-pod", false)
	port := waiting(id)
	t.Logf("POST to waiting_on_user: %v", time.Since(posted).Round(time.Millisecond))
	out, err := e.ssh("127.0.0.1", port, "cat /mnt/image/image-root/etc/motd && echo $IMS_JOB_ID $IMS_ARCH && echo pod > /mnt/image/image-root/etc/motd && touch /mnt/image/complete")
	if want := "parent\n" + id + " x86_64\n"; err != nil || out != want {
		t.Fatalf("ssh = %q, %v; want %q (the parent's motd in IMS's layout, IMS's session environment)", out, err, want)
	}
	rec := e.waitJob(id, "success")
	e.checkStatuses(id, "fetching_image", "waiting_on_user", "packaging_artifacts")
	jobs, steps := cluster.created()
	if len(jobs) != 1 || len(steps) != 1 || steps[0] != "image."+customizeLabel {
		t.Errorf("the cluster ran Jobs %v building %v; want one, building image.%s", jobs, steps, customizeLabel)
	}
	if rec["kubernetes_job"] != jobs[0] || rec["kubernetes_service"] != jobs[0] || rec["kubernetes_namespace"] != "ims" {
		t.Errorf("after success: kubernetes_job %v, kubernetes_service %v, kubernetes_namespace %v; want %s, %s, ims",
			rec["kubernetes_job"], rec["kubernetes_service"], rec["kubernetes_namespace"], jobs[0], jobs[0])
	}
	newID, _ := rec["resultant_image_id"].(string)
	root := e.unsquashRootfs(newID)
	if b, err := os.ReadFile(filepath.Join(root, "etc/motd")); err != nil || string(b) != "pod\n" {
		t.Errorf("etc/motd in the new image = %q, %v; want the change made over ssh", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "etc/cray/ca/certificate_authority.crt")); err != nil || string(b) != testCA {
		t.Errorf("/etc/cray/ca/certificate_authority.crt in the new image = %q, %v; want the --ca-cert PEM", b, err)
	}
	if svcs, err := cluster.cs.CoreV1().Services("ims").List(t.Context(), metav1.ListOptions{}); err != nil || len(svcs.Items) != 0 {
		t.Errorf("Services after success: %v, %v; want none", svcs, err)
	}
	e.checkParent()

	// Jailed: the session runs in the image, done with /tmp/complete.
	id = post("custom-jailed", true)
	port = waiting(id)
	if out, err := e.ssh("127.0.0.1", port, "echo jailed > /etc/motd && touch /tmp/complete"); err != nil {
		t.Fatalf("jailed ssh = %q, %v", out, err)
	}
	rec = e.waitJob(id, "success")
	if b, err := os.ReadFile(filepath.Join(e.unsquashRootfs(rec["resultant_image_id"].(string)), "etc/motd")); err != nil || string(b) != "jailed\n" {
		t.Errorf("etc/motd in the jailed job's image = %q, %v; want the change made over ssh", b, err)
	}

	// The failed file: error, no image.
	id = post("doomed", false)
	port = waiting(id)
	if out, err := e.ssh("127.0.0.1", port, "touch /mnt/image/failed"); err != nil {
		t.Fatalf("ssh = %q, %v", out, err)
	}
	if rec = e.waitJob(id, "error"); rec["resultant_image_id"] != nil {
		t.Errorf("failed job: resultant_image_id %v, want null", rec["resultant_image_id"])
	}
	e.checkStatuses(id, "fetching_image", "waiting_on_user")
	jobs, _ = cluster.created()

	// DELETE while the user may log in: the Job, its pod and Service go.
	id = post("deleted", false)
	port = waiting(id)
	e.Call(http.StatusNoContent, http.MethodDelete, "/jobs/"+id, nil)
	ctx := t.Context()
	js, err := cluster.cs.BatchV1().Jobs("ims").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range js.Items {
		if !slices.Contains(jobs, j.Name) {
			t.Errorf("Job %s left after DELETE", j.Name)
		}
	}
	if svcs, err := cluster.cs.CoreV1().Services("ims").List(ctx, metav1.ListOptions{}); err != nil || len(svcs.Items) != 0 {
		t.Errorf("Services after DELETE: %v, %v; want none", svcs, err)
	}
	pods, err := cluster.cs.CoreV1().Pods("ims").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if !slices.Contains(jobs, strings.TrimSuffix(p.Name, "-pod")) {
			t.Errorf("pod %s left after DELETE", p.Name)
		}
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second); err == nil {
		c.Close()
		t.Error("the pod's sshd still answers after DELETE")
	}
	if len(e.images()) != 3 {
		t.Errorf("image records %v; want the parent and the two successful jobs'", e.images())
	}
}

// TestCustomizeJobLocalExecutor: with an executor that does not let people
// into its steps (local), a customize job builds in this process as
// without one: connection_info names the server's own port at POST.
func TestCustomizeJobLocalExecutor(t *testing.T) {
	e := newCustEnvWith(t, func(cfg *Config, s3s *s3test.Server) {
		x, err := localproc.New("")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Executor = x
		cfg.Remote, cfg.RemoteURL = kubeRemote(t, s3s)
	})
	id, host, port := e.postJob(true, "custom-local")
	if host != "127.0.0.1" || port == 0 {
		t.Fatalf("connection_info = %s:%d, want the server's SSH port", host, port)
	}
	e.waitJob(id, "waiting_on_user")
	if out, err := e.ssh(host, port, "echo local > /etc/motd && touch /tmp/complete"); err != nil {
		t.Fatalf("ssh = %q, %v", out, err)
	}
	rec := e.waitJob(id, "success")
	if b, err := os.ReadFile(filepath.Join(e.unsquashRootfs(rec["resultant_image_id"].(string)), "etc/motd")); err != nil || string(b) != "local\n" {
		t.Errorf("etc/motd in the new image = %q, %v", b, err)
	}
	if rec["kubernetes_job"] != "" || rec["kubernetes_service"] != "" {
		t.Errorf("kubernetes_job %v, kubernetes_service %v; want none", rec["kubernetes_job"], rec["kubernetes_service"])
	}
}
