package jobs

import (
	"compress/gzip"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/local"
	s3cache "github.com/imsbuild/imsbuild/cache/s3"
	"github.com/imsbuild/imsbuild/cache/tiered"
	"github.com/imsbuild/imsbuild/engine"
	"github.com/imsbuild/imsbuild/executor"
	"github.com/imsbuild/imsbuild/executor/kubernetes"
	"github.com/imsbuild/imsbuild/internal/s3client"
	"github.com/imsbuild/imsbuild/internal/s3test"
	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/internal/untar"
	"github.com/imsbuild/imsbuild/spec"
)

// fakeCluster is client-go's fake clientset playing a cluster whose Jobs
// run: a Job's pod runs the Job's `imsbuild internal run-step` in this
// process (the bundle and parents from the remote cache, the outputs and
// the action record into it), its output the pod's log (PodLogs), and
// then shows as succeeded, or its Job as failed. An SSH environment of
// the step listens on loopback, where the test reaches it as kube-proxy
// would through the Service; deleting the Job stops its pod's step and
// deletes the pod.
type fakeCluster struct {
	t         *testing.T
	cs        *fake.Clientset
	remote    tiered.Remote
	remoteURL string

	mu    sync.Mutex
	jobs  []string // the Jobs created, in order
	steps []string // the steps their pods built
	logs  map[string]*io.PipeReader
	stops map[string]func() // by Job: stop its pod's step, wait for its end
}

// clusterIP is the address the fake gives every Service.
const clusterIP = "10.96.0.9"

func newFakeCluster(t *testing.T, remote tiered.Remote, remoteURL string) *fakeCluster {
	c := &fakeCluster{t: t, cs: fake.NewClientset(), remote: remote, remoteURL: remoteURL,
		logs: map[string]*io.PipeReader{}, stops: map[string]func(){}}
	c.cs.PrependReactor("create", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		job := a.(k8stesting.CreateAction).GetObject().(*batchv1.Job)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		c.mu.Lock()
		c.jobs = append(c.jobs, job.Name)
		c.stops[job.Name] = func() { cancel(); <-done }
		c.mu.Unlock()
		// The fake holds its lock through the reactors: the pod runs
		// after the create.
		go func() {
			defer close(done)
			c.runPod(ctx, job.Namespace, job.Name)
		}()
		return false, nil, nil
	})
	c.cs.PrependReactor("delete", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		ns, name := a.GetNamespace(), a.(k8stesting.DeleteAction).GetName()
		c.mu.Lock()
		stop := c.stops[name]
		c.mu.Unlock()
		go func() { // outside the fake's lock
			if stop != nil {
				stop()
			}
			err := c.cs.CoreV1().Pods(ns).Delete(context.Background(), name+"-pod", metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("delete pod of job %s: %v", name, err)
			}
		}()
		return false, nil, nil
	})
	c.cs.PrependReactor("create", "services", func(a k8stesting.Action) (bool, runtime.Object, error) {
		a.(k8stesting.CreateAction).GetObject().(*corev1.Service).Spec.ClusterIP = clusterIP
		return false, nil, nil
	})
	// Prepended last, so it runs first: objects get a UID, as the API
	// server gives them (the executor follows a Job's pods by it).
	var n atomic.Int64
	c.cs.PrependReactor("create", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if m, ok := a.(k8stesting.CreateAction).GetObject().(metav1.Object); ok && m.GetUID() == "" {
			m.SetUID(types.UID(fmt.Sprintf("uid-%d", n.Add(1))))
		}
		return false, nil, nil
	})
	return c
}

// podLogs is the executor's PodLogs: the output of the pod's step, live.
func (c *fakeCluster) podLogs(ctx context.Context, pod string) (io.ReadCloser, error) {
	c.mu.Lock()
	pr := c.logs[pod]
	delete(c.logs, pod)
	c.mu.Unlock()
	if pr == nil {
		return io.NopCloser(strings.NewReader("")), nil
	}
	stop := context.AfterFunc(ctx, func() { pr.CloseWithError(ctx.Err()) })
	return readCloser{pr, func() error { stop(); return pr.Close() }}, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }

func (c *fakeCluster) created() (jobs, steps []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.jobs), slices.Clone(c.steps)
}

// runPod runs the pod of Job ns/name: running while its step runs, then
// how it ended. A step stopped by ctx (the Job's deletion) leaves the pod
// to the deletion.
func (c *fakeCluster) runPod(ctx context.Context, ns, name string) {
	job, err := c.cs.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		c.t.Errorf("pod of job %s: %v", name, err)
		return
	}
	ctr := job.Spec.Template.Spec.Containers[0]
	var env []string
	for _, e := range ctr.Env {
		env = append(env, e.Name+"="+e.Value)
	}
	pr, pw := io.Pipe()
	c.mu.Lock()
	c.logs[name+"-pod"] = pr
	c.mu.Unlock()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name + "-pod", Namespace: ns, Labels: job.Spec.Template.Labels, CreationTimestamp: metav1.Now(),
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: name, UID: job.UID}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
			Name: kubernetes.Container, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
		}}},
	}
	if pod, err = c.cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		c.t.Errorf("pod of job %s: %v", name, err)
		return
	}
	stepErr := c.runStep(ctx, ctr.Args, env, pw)
	pw.Close()
	if ctx.Err() != nil {
		c.t.Logf("pod of job %s: stopped: %v", name, stepErr)
		return
	}
	exit, phase := int32(0), corev1.PodSucceeded
	if stepErr != nil {
		c.t.Logf("pod of job %s: %v", name, stepErr)
		exit, phase = 1, corev1.PodFailed
	}
	pod.Status = corev1.PodStatus{Phase: phase, ContainerStatuses: []corev1.ContainerStatus{{
		Name: kubernetes.Container, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: exit}},
	}}}
	if _, err := c.cs.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		c.t.Errorf("pod of job %s: %v", name, err)
		return
	}
	if phase == corev1.PodFailed {
		job.Status.Conditions = append(job.Status.Conditions, batchv1.JobCondition{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded"})
		if _, err := c.cs.BatchV1().Jobs(ns).UpdateStatus(ctx, job, metav1.UpdateOptions{}); err != nil {
			c.t.Errorf("fail job %s: %v", name, err)
		}
	}
}

// runStep is `imsbuild internal run-step` (cmd/imsbuild/runstep.go) in
// this process: it loads the bundle's build and builds the one step,
// writing its log and SSH marker line to out. Its SSH environment listens
// on loopback (the pod's address, $IMSBUILD_SSH_LISTEN, is the cluster's).
func (c *fakeCluster) runStep(ctx context.Context, args, env []string, out io.Writer) error {
	if len(args) < 2 || args[0] != "internal" || args[1] != "run-step" {
		return fmt.Errorf("pod args %q: want internal run-step", args)
	}
	fs := flag.NewFlagSet("run-step", flag.ContinueOnError)
	cacheURL := fs.String("cache", "", "")
	bundle := fs.String("bundle", "", "")
	step := fs.String("step", "", "")
	key := fs.String("key", "", "")
	resultKey := fs.String("result-key", "", "")
	interactive := fs.Bool("interactive", false, "")
	debug := fs.Bool("debug-on-failure", false, "")
	imsLayout := fs.Bool("ims-layout", false, "")
	imsDebugLayout := fs.Bool("ims-debug-layout", false, "")
	sshTimeout := fs.Duration("ssh-timeout", 0, "")
	var keys, sshEnv stringsFlag
	fs.Var(&keys, "authorized-key", "")
	fs.Var(&sshEnv, "ssh-env", "")
	if err := fs.Parse(args[2:]); err != nil {
		return err
	}
	if *cacheURL != c.remoteURL {
		return fmt.Errorf("--cache %s, want the server's remote cache %s", *cacheURL, c.remoteURL)
	}
	listen := ""
	for _, kv := range env {
		if strings.HasPrefix(kv, executor.SSHListenEnv+"=") {
			listen = "127.0.0.1:0"
		}
	}
	var only []string
	if *interactive {
		only = []string{*step}
	}
	work := c.t.TempDir()
	dir := filepath.Join(work, "bundle")
	rc, err := c.remote.Open(ctx, cache.Digest(*bundle))
	if err != nil {
		return err
	}
	defer rc.Close()
	gz, err := gzip.NewReader(rc)
	if err != nil {
		return err
	}
	if err := untar.Extract(ctx, gz, dir, untar.Options{}); err != nil {
		return err
	}
	cfg, diags := spec.LoadContext(ctx, filepath.Join(dir, engine.BundleBuildDir), spec.Options{
		VarFiles: []string{filepath.Join(dir, engine.BundleVarsName)}, Environ: env,
	})
	if diags.HasErrors() {
		return diags
	}
	own, err := local.Open(filepath.Join(work, "cache"))
	if err != nil {
		return err
	}
	tc := tiered.New(own, nil, c.remote)
	e, err := engine.New(cfg, tc, tc.Actions(), engine.Options{
		Environ: env, StateDir: filepath.Join(work, "state"), WorkDir: filepath.Join(work, "work"), LogDir: filepath.Join(work, "logs"),
		Interactive: only, DebugOnFailure: *debug, PublicKeys: keys, SSHTimeout: *sshTimeout,
		SSHListenOverride: listen, ResultKey: *resultKey, IMSLayout: *imsLayout, IMSDebugLayout: *imsDebugLayout, SSHEnv: sshEnv,
		Events: func(ev engine.Event) {
			switch {
			case ev.Status == engine.StatusLog:
				fmt.Fprintln(out, ev.Line)
			case ev.Status == engine.StatusWaiting && ev.SSH != nil:
				fmt.Fprint(out, executor.FormatSSHMarker(*ev.SSH))
			}
		},
	})
	if err != nil {
		return err
	}
	if err := e.BuildStep(ctx, *step, *key); err != nil {
		return err
	}
	c.mu.Lock()
	c.steps = append(c.steps, *step)
	c.mu.Unlock()
	return nil
}

// stringsFlag is a repeated string flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

// newKubeExecutor is the Kubernetes executor on cluster, in namespace
// ims, as the server's Config takes it.
func newKubeExecutor(t *testing.T, cluster *fakeCluster) *kubernetes.Executor {
	x, err := kubernetes.New(cluster.cs, kubernetes.Config{Namespace: "ims", Image: "imsbuild-builder:test",
		CleanupTimeout: 20 * time.Second, LogWait: 5 * time.Second, PodLogs: cluster.podLogs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = x.Close() })
	return x
}

// kubeRemote is a remote cache in s3s for the executor's steps, and its
// URL as run-step opens it.
func kubeRemote(t *testing.T, s3s *s3test.Server) (tiered.Remote, string) {
	s3s.CreateBucket(t, "imsbuild-cache")
	remote, err := s3cache.Open(t.Context(), "s3://imsbuild-cache/jobs", s3cache.Options{Config: s3client.Config{
		Endpoint: s3s.Endpoint, Region: s3s.Region, PathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(s3s.AccessKey, s3s.SecretKey, ""),
	}})
	if err != nil {
		t.Fatal(err)
	}
	return remote, "s3://imsbuild-cache/jobs?endpoint=" + s3s.Endpoint + "&path_style=true"
}

// TestCreateJobKubernetes runs a create job through the IMS API with the
// Kubernetes executor on a fake cluster whose pods run the steps in this
// process (a fake kiwi): the kiwi prepare and the pack each run as a Job,
// the record's kubernetes_job and kubernetes_namespace name the first of
// them, no Service, ConfigMap or PVC is named, the job succeeds with its
// image. A second job of the recipe is all cached: no Job, none named. A
// job whose kiwi fails in its Job ends in error, naming that Job.
func TestCreateJobKubernetes(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.FakeKiwi(t)
	var cluster *fakeCluster
	e := newServeEnvWith(t, 1, func(cfg *Config, s3s *s3test.Server) {
		remote, url := kubeRemote(t, s3s)
		cluster = newFakeCluster(t, remote, url)
		cfg.Executor, cfg.Remote, cfg.RemoteURL = newKubeExecutor(t, cluster), remote, url
	})
	key := e.Call(201, "POST", "/public-keys", map[string]any{"name": "k", "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBm1kubernetes k@test"})["id"].(string)
	recipe := e.registerRecipe("good", fakeRecipe(t, "kubernetes"))
	post := map[string]any{"job_type": "create", "artifact_id": recipe, "public_key_id": key, "image_root_archive_name": "debian-node"}

	posted := e.Call(201, "POST", "/jobs", post)
	id := posted["id"].(string)
	for _, f := range []string{"kubernetes_job", "kubernetes_service", "kubernetes_configmap", "kubernetes_pvc", "kubernetes_namespace"} {
		if posted[f] != "" {
			t.Errorf("POST answered %s = %v, want \"\" before any Job runs", f, posted[f])
		}
	}
	job, seen := e.WaitJob(id, 2*time.Minute, "success", "error")
	if job["status"] != "success" {
		t.Fatalf("create job: %v (%v)\n%s", job["status"], seen, e.Get("/jobs/"+id+"/log"))
	}
	checkImage(t, e, job, id)
	jobs, steps := cluster.created()
	if want := []string{"image.image/prepare", "image.image"}; !slices.Equal(steps, want) || len(jobs) != 2 {
		t.Fatalf("the cluster ran Jobs %v building %v; want two, building %v", jobs, steps, want)
	}
	if job["kubernetes_job"] != jobs[0] || job["kubernetes_namespace"] != "ims" {
		t.Errorf("kubernetes_job %v, kubernetes_namespace %v; want the prepare's Job %s in ims", job["kubernetes_job"], job["kubernetes_namespace"], jobs[0])
	}
	for _, f := range []string{"kubernetes_service", "kubernetes_configmap", "kubernetes_pvc"} {
		if job[f] != "" {
			t.Errorf("%s = %v, want \"\": imsbuild creates none", f, job[f])
		}
	}
	// The statuses as IMS's, each in the log (polling may miss one).
	log := string(e.Get("/jobs/" + id + "/log"))
	for _, want := range []string{
		"status fetching_recipe", "status waiting_for_repos", "status building_image", "status packaging_artifacts",
		"step image.image/prepare runs in Kubernetes Job ims/" + jobs[0], "step image.image runs in Kubernetes Job ims/" + jobs[1],
		"image.image/prepare done remotely", "image.image done remotely",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("job log has no %q:\n%s", want, log)
		}
	}

	// The same recipe again: every step comes from the cache, no Job.
	id = e.Call(201, "POST", "/jobs", post)["id"].(string)
	job, _ = e.WaitJob(id, 2*time.Minute, "success", "error")
	if job["status"] != "success" {
		t.Fatalf("second create job: %v\n%s", job["status"], e.Get("/jobs/"+id+"/log"))
	}
	checkImage(t, e, job, id)
	if again, _ := cluster.created(); len(again) != len(jobs) || job["kubernetes_job"] != "" {
		t.Errorf("second job: Jobs %v, kubernetes_job %q; want no new Job and none named", again, job["kubernetes_job"])
	}

	// A recipe whose kiwi fails: its prepare's Job fails, and the job is
	// error, with no image, naming that Job.
	bad := e.registerRecipe("bad", fakeRecipe(t, "FAIL"))
	post["artifact_id"] = bad
	id = e.Call(201, "POST", "/jobs", post)["id"].(string)
	job, _ = e.WaitJob(id, 2*time.Minute, "success", "error")
	all, _ := cluster.created()
	if job["status"] != "error" || job["resultant_image_id"] != nil || len(all) != len(jobs)+1 || job["kubernetes_job"] != all[len(all)-1] {
		t.Errorf("failing job: status %v, image %v, kubernetes_job %v, Jobs %v; want error, no image, the one new Job named\n%s",
			job["status"], job["resultant_image_id"], job["kubernetes_job"], all, e.Get("/jobs/"+id+"/log"))
	}
}

// TestCreateJobKubernetesDebug: a create job with enable_debug whose kiwi
// fails in its Job's pod opens the debug shell there, in IMS's layout;
// the record goes waiting_on_user with connection_info naming the pod's
// Service and kubernetes_service the Service; the real ssh client reaches
// the shell (the Service's target port on loopback), touches complete, and
// the job ends in error without an image, leaving no Service.
func TestCreateJobKubernetesDebug(t *testing.T) {
	testutil.RequireRoot(t)
	sshBin := testutil.RequireTool(t, "ssh")
	keygen := testutil.RequireTool(t, "ssh-keygen")
	testutil.FakeKiwi(t)
	var cluster *fakeCluster
	e := newServeEnvWith(t, 1, func(cfg *Config, s3s *s3test.Server) {
		remote, url := kubeRemote(t, s3s)
		cluster = newFakeCluster(t, remote, url)
		cfg.Executor, cfg.Remote, cfg.RemoteURL = newKubeExecutor(t, cluster), remote, url
	})
	keyFile := filepath.Join(t.TempDir(), "id_ed25519")
	if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-f", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, _ := os.ReadFile(keyFile + ".pub")
	key := e.Call(201, "POST", "/public-keys", map[string]any{"name": "k", "public_key": string(pub)})["id"].(string)
	bad := e.registerRecipe("bad", fakeRecipe(t, "FAIL"))
	posted := e.Call(201, "POST", "/jobs", map[string]any{"job_type": "create", "artifact_id": bad, "public_key_id": key, "image_root_archive_name": "bad", "enable_debug": true})
	id := posted["id"].(string)
	if ci := posted["ssh_containers"].([]any)[0].(map[string]any)["connection_info"]; ci != nil {
		t.Errorf("POST answered connection_info %v; want none before the pod's Service exists", ci)
	}
	job, _ := e.WaitJob(id, 2*time.Minute, "waiting_on_user", "error", "success")
	if job["status"] != "waiting_on_user" {
		t.Fatalf("debug job: %v\n%s", job["status"], e.Get("/jobs/"+id+"/log"))
	}
	jobs, _ := cluster.created()
	name := jobs[len(jobs)-1]
	if job["kubernetes_job"] != name || job["kubernetes_service"] != name || job["kubernetes_namespace"] != "ims" {
		t.Errorf("kubernetes_job %v, kubernetes_service %v, kubernetes_namespace %v; want the prepare's Job and Service %s in ims",
			job["kubernetes_job"], job["kubernetes_service"], job["kubernetes_namespace"], name)
	}
	ci := job["ssh_containers"].([]any)[0].(map[string]any)["connection_info"].(map[string]any)
	cl, ca := ci["cluster.local"].(map[string]any), ci["customer_access"].(map[string]any)
	if cl["host"] != name+".ims.svc.cluster.local" || cl["port"] != 22.0 || ca["host"] != clusterIP || ca["port"] != 22.0 {
		t.Errorf("connection_info %v; want the Service %s", ci, name)
	}
	svc, err := cluster.cs.CoreV1().Services("ims").Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the job's Service: %v", err)
	}
	port := svc.Spec.Ports[0].TargetPort.IntValue()
	out, err := exec.Command(sshBin, "-i", keyFile, "-p", strconv.Itoa(port), "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
		"root@127.0.0.1", "cat /mnt/image/build/image-root/etc/half && pwd && touch /mnt/image/complete").CombinedOutput()
	if err != nil || string(out) != "half-installed\n/mnt/image/build/image-root\n" {
		t.Fatalf("debug ssh: %v\n%s", err, out)
	}
	job, _ = e.WaitJob(id, time.Minute, "error", "success")
	if job["status"] != "error" || job["resultant_image_id"] != nil {
		t.Errorf("debug job after the shell: %v", job)
	}
	if svcs, err := cluster.cs.CoreV1().Services("ims").List(t.Context(), metav1.ListOptions{}); err != nil || len(svcs.Items) != 0 {
		t.Errorf("Services after the job: %v, %v; want none", svcs, err)
	}
}
