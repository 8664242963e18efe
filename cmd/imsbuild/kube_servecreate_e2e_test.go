//go:build kubernetes

package main

import (
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/imsbuild/imsbuild/executor/kubernetes"
	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/ims/server/servertest"
	"github.com/imsbuild/imsbuild/internal/k8stest"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// createStatuses is a create job's way through IMS's statuses (SPEC §2.6).
var createStatuses = []string{"creating", "fetching_recipe", "waiting_for_repos", "building_image", "packaging_artifacts", "success"}

// kubeServe starts `imsbuild serve --executor kubernetes` on e as
// TestKubernetesServeCustomize does (a versitygw remote cache, host
// network, pull policy Never), with finished Jobs kept 2 s (the TTL is
// how the executor's finished Jobs go); it returns the server, a client
// of its API and of its embedded S3.
func kubeServe(t *testing.T, e *k8stest.Env, client *http.Client) (*serveProc, *servertest.Client, *awss3.Client) {
	t.Helper()
	env, url := kubeCache(t, "servecreate")
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	site := t.TempDir()
	block := strings.Replace(kubeBlock(e), "backoff_limit     = 0", "backoff_limit     = 0\n    ttl_after_finished = \"2s\"", 1)
	testutil.WriteFiles(t, site, map[string]string{"site.ims.hcl": block}, 0o644)
	p := startServe(t, client, "--data-dir", filepath.Join(t.TempDir(), "d"), "--executor", "kubernetes",
		"--kubeconfig", e.Kubeconfig, "--namespace", e.Namespace, "--builder-image", k8stest.BuilderImageRef,
		"--executor-config", site, "--cache-to", url)
	return p, &servertest.Client{T: t, HTTP: client, Base: p.url + "/v3"}, embeddedS3(t, p)
}

// waitKubeJob polls job id (bounded by timeout) until its record names a
// Kubernetes Job whose pod exists, and checks the Job is the job's (its
// build label) and its pod privileged (kiwi prepare). It returns the Job's
// name and the statuses seen.
func waitKubeJob(t *testing.T, e *k8stest.Env, u *servertest.Client, id string, timeout time.Duration) (string, []string) {
	t.Helper()
	var seen []string
	deadline := time.Now().Add(timeout)
	for {
		rec := u.Call(200, "GET", "/jobs/"+id, nil)
		if st, _ := rec["status"].(string); len(seen) == 0 || seen[len(seen)-1] != st {
			seen = append(seen, st)
		}
		if st := rec["status"]; st == "error" || st == "success" {
			t.Fatalf("job %s %v before its record named a running Job (statuses %v)\nlog:\n%s", id, st, seen, u.Log(id))
		}
		if job, _ := rec["kubernetes_job"].(string); job != "" {
			if rec["kubernetes_namespace"] != e.Namespace {
				t.Errorf("kubernetes_namespace %v, want %s", rec["kubernetes_namespace"], e.Namespace)
			}
			k8sJob, err := e.Client.BatchV1().Jobs(e.Namespace).Get(t.Context(), job, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("the record's kubernetes_job %s: %v", job, err)
			}
			if k8sJob.Labels[kubernetes.LabelBuild] != id || k8sJob.Annotations[kubernetes.AnnotationStep] != "image.image/prepare" {
				t.Errorf("Job %s: build label %q, step %q; want %s's kiwi prepare", job, k8sJob.Labels[kubernetes.LabelBuild],
					k8sJob.Annotations[kubernetes.AnnotationStep], id)
			}
			pods, err := e.Client.CoreV1().Pods(e.Namespace).List(t.Context(), metav1.ListOptions{LabelSelector: kubernetes.LabelJob + "=" + job})
			if err != nil {
				t.Fatal(err)
			}
			if len(pods.Items) == 1 {
				if !privileged(pods.Items[0].Spec.Containers[0].SecurityContext) {
					t.Errorf("kiwi prepare's pod %s is not privileged", pods.Items[0].Name)
				}
				return job, seen
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: no Job with a pod named after %v (statuses %v)\nlog:\n%s", id, timeout, seen, u.Log(id))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// clusterEmpty waits (90 s at most) until e's namespace has no Job, pod,
// Service, Secret or ConfigMap but the cluster's own kube-root-ca.crt;
// it returns how long that took.
func clusterEmpty(t *testing.T, e *k8stest.Env) time.Duration {
	t.Helper()
	start := time.Now()
	ctx, opts, ns := t.Context(), metav1.ListOptions{}, e.Namespace
	lists := []struct {
		kind string
		list func() (runtime.Object, error)
	}{
		{"Job", func() (runtime.Object, error) { return e.Client.BatchV1().Jobs(ns).List(ctx, opts) }},
		{"pod", func() (runtime.Object, error) { return e.Client.CoreV1().Pods(ns).List(ctx, opts) }},
		{"Service", func() (runtime.Object, error) { return e.Client.CoreV1().Services(ns).List(ctx, opts) }},
		{"Secret", func() (runtime.Object, error) { return e.Client.CoreV1().Secrets(ns).List(ctx, opts) }},
		{"ConfigMap", func() (runtime.Object, error) { return e.Client.CoreV1().ConfigMaps(ns).List(ctx, opts) }},
	}
	var left []string
	for time.Since(start) < 90*time.Second {
		left = nil
		for _, l := range lists {
			list, err := l.list()
			if err != nil {
				t.Fatal(err)
			}
			items, err := meta.ExtractList(list)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range items {
				if name := o.(metav1.Object).GetName(); name != "kube-root-ca.crt" {
					left = append(left, l.kind+" "+name)
				}
			}
		}
		if len(left) == 0 {
			return time.Since(start)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Errorf("90 s after the job: %v left in %s; want nothing", left, e.Namespace)
	return time.Since(start)
}

// TestKubernetesServeCreate: a real `imsbuild serve --executor kubernetes`
// on the test cluster (as in TestKubernetesServeCustomize) runs a create
// job of examples/debian-node's node recipe (real kiwi-ng from the Debian
// mirror), uploaded to its embedded S3 and registered through POST
// /recipes as IMS clients do. The job goes through IMS's create statuses;
// while it builds, kubernetes_job and kubernetes_namespace name the kiwi
// prepare's real Job, whose pod is privileged; kubernetes_service and
// kubernetes_configmap stay "" (imsbuild creates neither for a create
// job). It succeeds with an image record whose manifest lists rootfs,
// kernel and initrd in S3 with the md5 and md5sum the manifest says, and
// these are byte-identical to the artifacts of a second serve, without
// the executor, building the same recipe at the same time in this process
// tree (both take SOURCE_DATE_EPOCH from the mirror's Release file). The
// finished Jobs go by their TTL (2 s here): nothing is left in the
// namespace. 114–131 s on the 2-core test machine (each job 1m42–1m57,
// built side by side); every wait is bounded.
func TestKubernetesServeCreate(t *testing.T) {
	e := k8stest.Cluster(t)
	testutil.RequireRoot(t)
	for _, tool := range []string{"kiwi-ng", "debootstrap", "mksquashfs", "unsquashfs", "bwrap"} {
		testutil.RequireTool(t, tool)
	}
	e.LoadImage(t, testutil.RequireEnv(t, k8stest.BuilderImageEnv, "kubernetes"))
	client := &http.Client{Timeout: 30 * time.Second}
	start := time.Now()
	p, u, s3c := kubeServe(t, e, client)
	// The same recipe through a serve without the executor: the whole job
	// builds in that process.
	lp := startServe(t, client, "--data-dir", filepath.Join(t.TempDir(), "local"))
	ls3 := embeddedS3(t, lp)
	lu := &servertest.Client{T: t, HTTP: client, Base: lp.url + "/v3"}
	_, pub := testutil.SSHKey(t)
	post := func(u *servertest.Client, s3c *awss3.Client) map[string]any {
		recipe := postNodeRecipe(t, u, s3c, "")
		key := u.Call(201, "POST", "/public-keys", map[string]any{"name": "admin", "public_key": pub})["id"].(string)
		return u.Call(201, "POST", "/jobs", map[string]any{"job_type": "create", "artifact_id": recipe,
			"public_key_id": key, "image_root_archive_name": "node"})
	}
	posted := post(u, s3c)
	id := posted["id"].(string)
	localID := post(lu, ls3)["id"].(string)
	for _, f := range []string{"kubernetes_job", "kubernetes_service", "kubernetes_configmap"} {
		if posted[f] != "" {
			t.Errorf("POST answered %s = %v, want \"\" before any Job runs", f, posted[f])
		}
	}

	job, before := waitKubeJob(t, e, u, id, 3*time.Minute)
	t.Logf("POST → the prepare's Job %s running: %v", job, time.Since(start).Round(time.Millisecond))
	rec, seen := u.WaitJob(id, 5*time.Minute, "success", "error")
	seen = slices.Compact(append(before, seen...))
	if rec["status"] != "success" {
		t.Fatalf("create job %v (statuses %v)\nlog:\n%s\nserve stderr:\n%s", rec["status"], seen, u.Log(id), p.stderr)
	}
	kubeTime := time.Since(start)
	// Polling may miss a short status: what it saw is IMS's order, and the
	// log has each.
	i := 0
	for _, st := range seen {
		for i < len(createStatuses) && createStatuses[i] != st {
			i++
		}
		if i == len(createStatuses) {
			t.Errorf("statuses %v, want a subsequence of %v", seen, createStatuses)
			break
		}
	}
	log := u.Log(id)
	for _, want := range []string{"status fetching_recipe", "status waiting_for_repos", "status building_image", "status packaging_artifacts",
		"step image.image/prepare runs in Kubernetes Job " + e.Namespace + "/" + job, "image.image/prepare done remotely", "image.image done remotely"} {
		if !strings.Contains(log, want) {
			t.Errorf("job log has no %q:\n%s", want, log)
		}
	}
	if rec["kubernetes_job"] != job || rec["kubernetes_namespace"] != e.Namespace || rec["kubernetes_service"] != "" || rec["kubernetes_configmap"] != "" {
		t.Errorf("finished job: kubernetes_job %v, kubernetes_namespace %v, kubernetes_service %v, kubernetes_configmap %v; want %s in %s, no Service or ConfigMap",
			rec["kubernetes_job"], rec["kubernetes_namespace"], rec["kubernetes_service"], rec["kubernetes_configmap"], job, e.Namespace)
	}
	imageID, _ := rec["resultant_image_id"].(string)
	arts := checkS3Image(t, s3c, u.Call(200, "GET", "/images/"+imageID, nil), imageID, "node")
	if got := rootfsFile(t, s3c, arts, "usr/lib/os-release"); !strings.Contains(got, "bookworm") {
		t.Errorf("the created image's /usr/lib/os-release:\n%s", got)
	}

	lrec, lseen := lu.WaitJob(localID, 5*time.Minute, "success", "error")
	if lrec["status"] != "success" {
		t.Fatalf("local create job %v (statuses %v)\nlog:\n%s", lrec["status"], lseen, lu.Log(localID))
	}
	localTime := time.Since(start)
	localImage := lrec["resultant_image_id"].(string)
	localArts := checkS3Image(t, ls3, lu.Call(200, "GET", "/images/"+localImage, nil), localImage, "node")
	for _, mt := range []string{ims.MediaTypeRootfs, ims.MediaTypeKernel, ims.MediaTypeInitrd} {
		if arts[mt].md5 != localArts[mt].md5 {
			t.Errorf("%s: md5 %s through the executor, %s from the local serve; want the same bytes", mt, arts[mt].md5, localArts[mt].md5)
		}
	}
	gone := clusterEmpty(t, e)
	t.Logf("create job: POST → success %v (statuses %v); the local serve's job %v; the Jobs gone %v after",
		kubeTime.Round(time.Millisecond), seen, localTime.Round(time.Millisecond), gone.Round(time.Millisecond))
	for _, s := range []*serveProc{p, lp} {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		if code := s.wait(t); code != 0 {
			t.Errorf("imsbuild serve exit %d after SIGTERM\n%s", code, s.stderr)
		}
	}
}

// TestKubernetesServeCreateDebug: a create job with enable_debug of the
// node recipe whose config.sh leaves a mark in the root and exits 1, through
// a real `imsbuild serve --executor kubernetes`: kiwi fails in the
// prepare's pod, which opens the debug shell there; the job goes
// building_image → waiting_on_user (SPEC §2.6) with kubernetes_job and
// kubernetes_service naming the real Job and its Service and
// connection_info's customer_access the Service's cluster address; the
// real ssh client, through kube-proxy, sees the failed build's root at
// /mnt/image/build/image-root and touches /mnt/image/complete; the job
// ends in error without an image, and no Job, pod or Service is left.
// 56–70 s on the 2-core test machine (waiting_on_user after 41–45 s);
// every wait is bounded.
func TestKubernetesServeCreateDebug(t *testing.T) {
	e := k8stest.Cluster(t)
	testutil.RequireTool(t, "ssh")
	e.LoadImage(t, testutil.RequireEnv(t, k8stest.BuilderImageEnv, "kubernetes"))
	client := &http.Client{Timeout: 30 * time.Second}
	start := time.Now()
	p, u, s3c := kubeServe(t, e, client)
	recipe := postNodeRecipe(t, u, s3c, "\necho 'the failed build' > /etc/debug-mark\nexit 1\n")
	key, pub := testutil.SSHKey(t)
	keyID := u.Call(201, "POST", "/public-keys", map[string]any{"name": "admin", "public_key": pub})["id"].(string)
	id := u.Call(201, "POST", "/jobs", map[string]any{"job_type": "create", "artifact_id": recipe,
		"public_key_id": keyID, "image_root_archive_name": "node", "enable_debug": true})["id"].(string)

	job, before := waitKubeJob(t, e, u, id, 3*time.Minute)
	rec, seen := u.WaitJob(id, 5*time.Minute, "waiting_on_user", "error", "success")
	seen = slices.Compact(append(before, seen...))
	if rec["status"] != "waiting_on_user" {
		t.Fatalf("debug job %v (statuses %v)\nlog:\n%s\nserve stderr:\n%s", rec["status"], seen, u.Log(id), p.stderr)
	}
	if !slices.Contains(seen, "building_image") || slices.Contains(seen, "packaging_artifacts") {
		t.Errorf("statuses %v; want building_image then waiting_on_user", seen)
	}
	t.Logf("POST → waiting_on_user: %v (statuses %v)", time.Since(start).Round(time.Millisecond), seen)
	if rec["kubernetes_job"] != job || rec["kubernetes_service"] != job || rec["kubernetes_namespace"] != e.Namespace {
		t.Fatalf("kubernetes_job %v, kubernetes_service %v, kubernetes_namespace %v; want the prepare's Job %s and its Service in %s",
			rec["kubernetes_job"], rec["kubernetes_service"], rec["kubernetes_namespace"], job, e.Namespace)
	}
	svc, err := e.Client.CoreV1().Services(e.Namespace).Get(t.Context(), job, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the record's kubernetes_service: %v", err)
	}
	ci := rec["ssh_containers"].([]any)[0].(map[string]any)["connection_info"].(map[string]any)
	cl, ca := ci["cluster.local"].(map[string]any), ci["customer_access"].(map[string]any)
	host, _ := ca["host"].(string)
	port := int(ca["port"].(float64))
	if cl["host"] != job+"."+e.Namespace+".svc.cluster.local" || cl["port"] != 22.0 || host != svc.Spec.ClusterIP || port != kubernetes.SSHPort {
		t.Errorf("connection_info %v; want the Service %s (%s:22)", ci, job, svc.Spec.ClusterIP)
	}
	ssh := func(command string) (string, error) { return servertest.SSH(t, key, host, port, command) }
	out := sshWhenUp(t, ssh, "the Service "+job, "cat /mnt/image/build/image-root/etc/debug-mark && grep -c bookworm /mnt/image/build/image-root/etc/os-release >/dev/null && echo $PWD")
	if out != "the failed build\n/mnt/image/build/image-root\n" {
		t.Errorf("debug shell: %q; want the failed root's mark and the shell in it", out)
	}
	touchComplete(t, ssh)
	rec, seen = u.WaitJob(id, 2*time.Minute, "error", "success")
	if rec["status"] != "error" || rec["resultant_image_id"] != nil {
		t.Errorf("debug job after complete: status %v (statuses %v), image %v; want error, none", rec["status"], seen, rec["resultant_image_id"])
	}
	gone := clusterEmpty(t, e)
	t.Logf("debug job: POST → error %v; its Job, pod and Service gone %v after", time.Since(start).Round(time.Millisecond), gone.Round(time.Millisecond))
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("imsbuild serve exit %d after SIGTERM\n%s", code, p.stderr)
	}
}
