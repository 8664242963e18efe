//go:build kubernetes

package main

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imsbuild/imsbuild/executor/kubernetes"
	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/ims/server/servertest"
	"github.com/imsbuild/imsbuild/internal/k8stest"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// TestKubernetesServeCustomize: a real `imsbuild serve --executor
// kubernetes` on the test cluster (host-network pods and pull policy
// Never from --executor-config's executor block; the namespace and the
// loaded builder image by flag) and a versitygw remote cache. A busybox image, packed and
// uploaded to serve's embedded S3 as IMS does, and a public key are
// registered through the API; a customize job (non-jailed, IMS's
// default) goes waiting_on_user with kubernetes_job, kubernetes_service
// and kubernetes_namespace naming the real Job and Service, and
// customer_access the Service's cluster address: the real ssh client,
// through kube-proxy, changes the image root and touches complete; the job
// succeeds, its image's rootfs in S3 has the change, and the Service is
// gone. A second customize job, deleted while it waits, leaves no Job, pod
// or Service; being jailed, it waits in an unprivileged pod. 15–35 s on
// the test node (the DELETE's cleanup is done when it answers); each wait
// is bounded (2 minutes for a job, 90 s for the cleanup).
func TestKubernetesServeCustomize(t *testing.T) {
	e := k8stest.Cluster(t)
	e.LoadImage(t, testutil.RequireEnv(t, k8stest.BuilderImageEnv, "kubernetes"))
	for _, tool := range []string{"ssh", "mksquashfs", "unsquashfs", "busybox"} {
		testutil.RequireTool(t, tool)
	}
	env, url := kubeCache(t, "serve")
	// The remote cache's credentials, from the environment as serve takes
	// them (and passes them to the Jobs as a Secret).
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	// The executor's other settings, as a site gives them: host network
	// (the pods reach versitygw on 127.0.0.1), pull policy Never (the
	// image is only in the node's containerd), no retries.
	site := t.TempDir()
	testutil.WriteFiles(t, site, map[string]string{"site.ims.hcl": kubeBlock(e)}, 0o644)

	start := time.Now()
	client := &http.Client{Timeout: 30 * time.Second}
	p := startServe(t, client, "--data-dir", filepath.Join(t.TempDir(), "d"), "--executor", "kubernetes",
		"--kubeconfig", e.Kubeconfig, "--namespace", e.Namespace, "--builder-image", k8stest.BuilderImageRef,
		"--executor-config", site, "--cache-to", url)
	s3c := embeddedS3(t, p)
	u := &servertest.Client{T: t, HTTP: client, Base: p.url + "/v3"}
	parent := putBusyboxImage(t, u, s3c)
	key, pub := testutil.SSHKey(t)
	keyID := u.Call(201, "POST", "/public-keys", map[string]any{"name": "admin", "public_key": pub})["id"].(string)

	post := func(name string, jail bool) string {
		t.Helper()
		rec := u.Call(201, "POST", "/jobs", map[string]any{"job_type": "customize", "artifact_id": parent,
			"public_key_id": keyID, "image_root_archive_name": name,
			"ssh_containers": []map[string]any{{"name": "customize", "jail": jail}}})
		return rec["id"].(string)
	}
	// waiting waits for the job to wait on its user, checks that its
	// record names the real Job (its pod running, privileged for a
	// non-jailed job, unprivileged for a jailed one) and Service, and
	// returns the Job's name and where ssh reaches the pod.
	waiting := func(id string, jail bool) (job, host string, port int) {
		t.Helper()
		rec, seen := u.WaitJob(id, 2*time.Minute, "waiting_on_user", "error", "success")
		if rec["status"] != "waiting_on_user" {
			t.Fatalf("customize job %v (statuses %v)\nlog:\n%s\nserve stderr:\n%s", rec["status"], seen, u.Log(id), p.stderr)
		}
		job, _ = rec["kubernetes_job"].(string)
		if rec["kubernetes_namespace"] != e.Namespace || job == "" || rec["kubernetes_service"] != job {
			t.Fatalf("kubernetes_job %v, kubernetes_service %v, kubernetes_namespace %v; want one Job and its Service in %s",
				rec["kubernetes_job"], rec["kubernetes_service"], rec["kubernetes_namespace"], e.Namespace)
		}
		ci := rec["ssh_containers"].([]any)[0].(map[string]any)["connection_info"].(map[string]any)
		cl, ca := ci["cluster.local"].(map[string]any), ci["customer_access"].(map[string]any)
		host, _ = ca["host"].(string)
		port = int(ca["port"].(float64))
		if cl["host"] != job+"."+e.Namespace+".svc.cluster.local" || cl["port"] != 22.0 || port != kubernetes.SSHPort {
			t.Errorf("connection_info %v; want cluster.local %s.%s.svc.cluster.local:22, customer_access port 22", ci, job, e.Namespace)
		}
		k8sJob, err := e.Client.BatchV1().Jobs(e.Namespace).Get(t.Context(), job, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the record's kubernetes_job: %v", err)
		}
		if k8sJob.Labels[kubernetes.LabelBuild] != id {
			t.Errorf("Job %s build label %q, want the job's id %s", job, k8sJob.Labels[kubernetes.LabelBuild], id)
		}
		pods, err := e.Client.CoreV1().Pods(e.Namespace).List(t.Context(), metav1.ListOptions{LabelSelector: kubernetes.LabelJob + "=" + job})
		if err != nil || len(pods.Items) != 1 || pods.Items[0].Status.Phase != corev1.PodRunning {
			t.Fatalf("pods of Job %s: %v, %v; want one running", job, pods, err)
		}
		sc := pods.Items[0].Spec.Containers[0].SecurityContext
		if privileged := sc != nil && sc.Privileged != nil && *sc.Privileged; privileged == jail {
			t.Errorf("jail %v: the job's pod has security context %+v, want it privileged only when not jailed", jail, sc)
		}
		if jail && (sc == nil || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeUnconfined) {
			t.Errorf("jailed job's pod has security context %+v, want the sandbox's (seccomp unconfined)", sc)
		}
		svc, err := e.Client.CoreV1().Services(e.Namespace).Get(t.Context(), job, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the record's kubernetes_service: %v", err)
		}
		if svc.Spec.ClusterIP != host || net.ParseIP(host) == nil {
			t.Errorf("customer_access host %q, the Service's cluster IP %s", host, svc.Spec.ClusterIP)
		}
		if o := svc.OwnerReferences; len(o) != 1 || o[0].UID != k8sJob.UID {
			t.Errorf("Service owners %+v, want the Job %s", o, k8sJob.UID)
		}
		return job, host, port
	}

	id := post("busybox-custom", false)
	job, host, port := waiting(id, false)
	t.Logf("serve start → customize job waiting_on_user: %v", time.Since(start).Round(time.Millisecond))
	ssh := func(command string) (string, error) { return servertest.SSH(t, key, host, port, command) }
	if out := sshWhenUp(t, ssh, "the Service "+job, "cat /mnt/image/image-root/etc/motd"); out != "parent\n" {
		t.Errorf("the pod's image root /etc/motd = %q, want the parent's", out)
	}
	const motd = "customized in the pod over ssh\n"
	if out, err := ssh("printf '" + motd + "' > /mnt/image/image-root/etc/motd && echo $IMS_JOB_ID"); err != nil || strings.TrimSpace(out) != id {
		t.Fatalf("ssh: %v; IMS_JOB_ID %q, want %s", err, out, id)
	}
	touchComplete(t, ssh)
	rec, seen := u.WaitJob(id, 2*time.Minute, "success", "error")
	if rec["status"] != "success" {
		t.Fatalf("customize job %v (statuses %v)\nlog:\n%s\nserve stderr:\n%s", rec["status"], seen, u.Log(id), p.stderr)
	}
	t.Logf("customize job: serve start → success %v, statuses %v", time.Since(start).Round(time.Millisecond), seen)
	if rec["kubernetes_job"] != job || rec["kubernetes_service"] != job || rec["kubernetes_namespace"] != e.Namespace {
		t.Errorf("finished job names kubernetes_job %v, kubernetes_service %v, kubernetes_namespace %v; want %s in %s",
			rec["kubernetes_job"], rec["kubernetes_service"], rec["kubernetes_namespace"], job, e.Namespace)
	}
	if log := u.Log(id); !strings.Contains(log, "runs in Kubernetes Job "+e.Namespace+"/"+job) || !strings.Contains(log, "image.customize done remotely") {
		t.Errorf("job log does not show the step in the Job %s:\n%s", job, log)
	}
	childID, _ := rec["resultant_image_id"].(string)
	if childID == "" || childID == parent {
		t.Fatalf("resultant_image_id %q (parent %s)", childID, parent)
	}
	child := u.Call(200, "GET", "/images/"+childID, nil)
	arts := checkS3Image(t, s3c, child, childID, "busybox-custom")
	if got := rootfsFile(t, s3c, arts, "etc/motd"); got != motd {
		t.Errorf("the customized image's /etc/motd = %q, want %q", got, motd)
	}
	if _, err := e.Client.CoreV1().Services(e.Namespace).Get(t.Context(), job, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Service %s after the job ended: %v; want it gone", job, err)
	}

	// Deleted while it waits: its Job, pod and Service go.
	id = post("busybox-deleted", true)
	job, _, _ = waiting(id, true)
	u.Call(204, "DELETE", "/jobs/"+id, nil)
	deleted := time.Now()
	sel := metav1.ListOptions{LabelSelector: kubernetes.LabelJob + "=" + job}
	for {
		_, jerr := e.Client.BatchV1().Jobs(e.Namespace).Get(t.Context(), job, metav1.GetOptions{})
		_, serr := e.Client.CoreV1().Services(e.Namespace).Get(t.Context(), job, metav1.GetOptions{})
		pods, perr := e.Client.CoreV1().Pods(e.Namespace).List(t.Context(), sel)
		if perr != nil {
			t.Fatal(perr)
		}
		if apierrors.IsNotFound(jerr) && apierrors.IsNotFound(serr) && len(pods.Items) == 0 {
			break
		}
		if time.Since(deleted) > 90*time.Second {
			t.Fatalf("90 s after DELETE: Job %v, Service %v, %d pods; want all gone", jerr, serr, len(pods.Items))
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("DELETE of a waiting job → its Job, pod and Service gone: %v", time.Since(deleted).Round(time.Millisecond))
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("imsbuild serve exit %d after SIGTERM\n%s", code, p.stderr)
	}
}

// sshWhenUp runs command through ssh once it connects (kube-proxy leads
// a Service to its pod a second or so after the pod is an endpoint),
// trying for 60 s at most, and returns its output.
func sshWhenUp(t *testing.T, ssh func(string) (string, error), where, command string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := ssh(command)
		if err == nil {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssh through %s: %v", where, err)
		}
		time.Sleep(time.Second)
	}
}

// putBusyboxImage packs a busybox root (/etc/motd "parent", a kernel and
// initrd in /boot) as IMS's upload_artifacts does: the rootfs squashfs,
// kernel and initrd under one prefix of boot-images with their md5sum
// metadata, and the manifest; it registers the image and returns its id.
func putBusyboxImage(t *testing.T, u *servertest.Client, s3c *awss3.Client) string {
	t.Helper()
	root := testutil.BusyboxRoot(t, true)
	if err := os.WriteFile(filepath.Join(root, "etc/motd"), []byte("parent\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sq := filepath.Join(t.TempDir(), "rootfs")
	if out, err := exec.Command("mksquashfs", root, sq, "-noappend", "-no-progress", "-quiet").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	var arts []map[string]any
	for _, a := range []struct{ name, src string }{{"rootfs", sq}, {"kernel", filepath.Join(root, "boot/vmlinuz")}, {"initrd", filepath.Join(root, "boot/initrd.img")}} {
		data, err := os.ReadFile(a.src)
		if err != nil {
			t.Fatal(err)
		}
		sum := md5.Sum(data)
		md := hex.EncodeToString(sum[:])
		key := "parent/" + a.name
		if _, err := s3c.PutObject(t.Context(), &awss3.PutObjectInput{Bucket: aws.String("boot-images"), Key: aws.String(key),
			Body: bytes.NewReader(data), ContentType: aws.String(ims.MediaTypeOf(a.name)), Metadata: map[string]string{"md5sum": md}}); err != nil {
			t.Fatal(err)
		}
		arts = append(arts, map[string]any{"link": map[string]any{"path": "s3://boot-images/" + key, "etag": md, "type": "s3"}, "md5": md, "type": ims.MediaTypeOf(a.name)})
	}
	m, _ := json.MarshalIndent(map[string]any{"version": "1.0", "created": "2026-01-02 03:04:05", "artifacts": arts}, "", "    ")
	if _, err := s3c.PutObject(t.Context(), &awss3.PutObjectInput{Bucket: aws.String("boot-images"), Key: aws.String("parent/manifest.json"),
		Body: bytes.NewReader(m), ContentType: aws.String("application/json")}); err != nil {
		t.Fatal(err)
	}
	return u.Call(201, "POST", "/images", map[string]any{"name": "busybox",
		"link": map[string]any{"path": "s3://boot-images/parent/manifest.json", "etag": "", "type": "s3"}})["id"].(string)
}
