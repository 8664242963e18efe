package kubernetes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/imsbuild/imsbuild/executor"
)

const ns = "builds"

var testKey = strings.Repeat("0123456789abcdef", 4)

// newFake returns a fake clientset that gives created objects a UID, as
// the API server does, and deletes a Job's pods with the Job, as the
// garbage collector does for foreground deletion.
func newFake(t *testing.T) *fake.Clientset {
	t.Helper()
	cs := fake.NewClientset()
	var n atomic.Int64
	cs.PrependReactor("create", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if m, ok := a.(k8stesting.CreateAction).GetObject().(metav1.Object); ok && m.GetUID() == "" {
			m.SetUID(types.UID(fmt.Sprintf("uid-%d", n.Add(1))))
		}
		return false, nil, nil
	})
	cs.PrependReactor("delete", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		name := a.(k8stesting.DeleteAction).GetName()
		pods, _ := cs.Tracker().List(corev1.SchemeGroupVersion.WithResource("pods"), corev1.SchemeGroupVersion.WithKind("Pod"), ns)
		for _, p := range pods.(*corev1.PodList).Items {
			if p.Labels[LabelJob] == name {
				_ = cs.Tracker().Delete(corev1.SchemeGroupVersion.WithResource("pods"), ns, p.Name)
			}
		}
		return false, nil, nil
	})
	return cs
}

func newExecutor(t *testing.T, cs *fake.Clientset, mod func(*Config)) *Executor {
	t.Helper()
	cfg := Config{Namespace: ns, Image: "imsbuild-builder:test", ImagePullPolicy: corev1.PullNever, CleanupTimeout: 5 * time.Second, LogWait: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(cs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func testStep(log *bytes.Buffer) executor.Step {
	return executor.Step{
		BuildID: "build-1", Step: "image.compute/customize", Key: testKey,
		Args: []string{"internal", "run-step", "--step", "image.compute/customize"},
		Env:  map[string]string{"B": "2", "A": "1"},
		Log:  syncWriter(log),
	}
}

// lockedWriter makes a bytes.Buffer safe to read while Run writes it.
type lockedWriter struct{ b *bytes.Buffer }

var logMu sync.Mutex

func syncWriter(b *bytes.Buffer) *lockedWriter { return &lockedWriter{b: b} }

func (w *lockedWriter) Write(p []byte) (int, error) {
	logMu.Lock()
	defer logMu.Unlock()
	return w.b.Write(p)
}

func logString(b *bytes.Buffer) string {
	logMu.Lock()
	defer logMu.Unlock()
	return b.String()
}

func runAsync(ctx context.Context, e *Executor, s executor.Step) <-chan error {
	c := make(chan error, 1)
	go func() { c <- e.Run(ctx, s) }()
	return c
}

// waitFor polls cond (the fake has no controllers to wait on).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func getJob(t *testing.T, cs *fake.Clientset, name string) *batchv1.Job {
	t.Helper()
	var job *batchv1.Job
	waitFor(t, "job "+name, func() bool {
		j, err := cs.BatchV1().Jobs(ns).Get(context.Background(), name, metav1.GetOptions{})
		job = j
		return err == nil
	})
	return job
}

// addPod plays the Job controller: a pod of job in the given state.
func addPod(t *testing.T, cs *fake.Clientset, job *batchv1.Job, name string, state corev1.ContainerState) {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns, Labels: job.Spec.Template.Labels,
			CreationTimestamp: metav1.Now(),
			OwnerReferences:   []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: job.UID}},
		},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: Container, State: state}}},
	}
	if _, err := cs.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

var running = corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}

func setCondition(t *testing.T, cs *fake.Clientset, job *batchv1.Job, typ batchv1.JobConditionType, reason, msg string) {
	t.Helper()
	job = job.DeepCopy()
	job.Status.Conditions = append(job.Status.Conditions, batchv1.JobCondition{Type: typ, Status: corev1.ConditionTrue, Reason: reason, Message: msg})
	if _, err := cs.BatchV1().Jobs(ns).UpdateStatus(context.Background(), job, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestJobName(t *testing.T) {
	for _, tc := range []struct {
		key, want string
		ok        bool
	}{
		{testKey, "imsbuild-0123456789abcdef0123", true},
		{"0123456789abcdef012", "", false},               // too short
		{"0123456789ABCDEF0123456789", "", false},        // not lowercase
		{"../../0123456789abcdef0123456789", "", false},  // hostile
		{"0123456789abcdef0123 --privileged", "", false}, // hostile
	} {
		got, err := JobName(tc.key)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("JobName(%q) = %q, %v; want %q, ok %v", tc.key, got, err, tc.want, tc.ok)
		}
	}
}

func TestLabelValue(t *testing.T) {
	for in, want := range map[string]string{
		"image.compute/prepare": "image.compute_prepare",
		"-x-":                   "x",
		strings.Repeat("a", 70): strings.Repeat("a", 63),
		"ünï":                   "n",
	} {
		if got := labelValue(in); got != want {
			t.Errorf("labelValue(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRunComplete checks the Job's spec (labels, annotations, retries, TTL,
// no privilege unless asked, no token) and that a completed Job is success
// with the pod's log streamed.
func TestRunComplete(t *testing.T) {
	cs := newFake(t)
	e := newExecutor(t, cs, func(c *Config) {
		c.ServiceAccount = "imsbuild"
		c.NodeSelector = map[string]string{"role": "builder"}
		c.TTLAfterFinished = 10 * time.Minute
	})
	var log bytes.Buffer
	done := runAsync(t.Context(), e, testStep(&log))
	job := getJob(t, cs, "imsbuild-0123456789abcdef0123")

	wantLabels := map[string]string{
		LabelManagedBy: "imsbuild", LabelBuild: "build-1", LabelStep: "image.compute_customize",
		LabelKey: testKey[:63], LabelJob: "imsbuild-0123456789abcdef0123",
	}
	for k, v := range wantLabels {
		if job.Labels[k] != v || job.Spec.Template.Labels[k] != v {
			t.Errorf("label %s = %q (pod %q), want %q", k, job.Labels[k], job.Spec.Template.Labels[k], v)
		}
	}
	if job.Annotations[AnnotationKey] != testKey || job.Annotations[AnnotationStep] != "image.compute/customize" {
		t.Errorf("annotations = %v", job.Annotations)
	}
	if *job.Spec.BackoffLimit != 2 || *job.Spec.TTLSecondsAfterFinished != 600 {
		t.Errorf("backoffLimit %d, ttl %d; want 2, 600", *job.Spec.BackoffLimit, *job.Spec.TTLSecondsAfterFinished)
	}
	ps := job.Spec.Template.Spec
	c := ps.Containers[0]
	if c.SecurityContext != nil {
		t.Errorf("unprivileged step has security context %+v", c.SecurityContext)
	}
	if ps.RestartPolicy != corev1.RestartPolicyNever || *ps.AutomountServiceAccountToken || ps.ServiceAccountName != "imsbuild" || ps.NodeSelector["role"] != "builder" {
		t.Errorf("pod spec = %+v", ps)
	}
	if c.Image != "imsbuild-builder:test" || c.ImagePullPolicy != corev1.PullNever ||
		strings.Join(c.Command, " ") != "imsbuild" || strings.Join(c.Args, " ") != "internal run-step --step image.compute/customize" {
		t.Errorf("container = %+v", c)
	}
	if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != "/tmp" || len(ps.Volumes) != 1 ||
		ps.Volumes[0].Name != c.VolumeMounts[0].Name || ps.Volumes[0].EmptyDir == nil {
		t.Errorf("volumes %+v, mounts %+v; want an emptyDir at /tmp", ps.Volumes, c.VolumeMounts)
	}
	if len(c.Env) != 2 || c.Env[0].Name != "A" || c.Env[1].Name != "B" || len(c.EnvFrom) != 0 {
		t.Errorf("env = %+v, envFrom = %+v; want A, B sorted and no secret", c.Env, c.EnvFrom)
	}

	addPod(t, cs, job, "pod-1", running)
	waitFor(t, "log", func() bool { return strings.Contains(logString(&log), "fake logs") })
	setCondition(t, cs, job, batchv1.JobComplete, "Completed", "")
	if err := <-done; err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
}

// TestRunPodSucceeded: the step is done once its pod succeeded, before
// the Job controller marks the Job Complete (seconds later on a loaded
// node), with the pod's log; a pod that failed is not enough to end it.
func TestRunPodSucceeded(t *testing.T) {
	cs := newFake(t)
	e := newExecutor(t, cs, nil)
	var log bytes.Buffer
	done := runAsync(t.Context(), e, testStep(&log))
	job := getJob(t, cs, "imsbuild-0123456789abcdef0123")
	exited := func(code int32) corev1.ContainerState {
		return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code}}
	}
	addPod(t, cs, job, "pod-1", exited(1))
	setPhase(t, cs, "pod-1", corev1.PodFailed)
	select {
	case err := <-done:
		t.Fatalf("Run() = %v after a failed pod of a Job not failed, want it running", err)
	case <-time.After(300 * time.Millisecond):
	}
	addPod(t, cs, job, "pod-2", exited(0))
	setPhase(t, cs, "pod-2", corev1.PodSucceeded)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run() = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run() still waiting after its pod succeeded")
	}
	if !strings.Contains(logString(&log), "fake logs") {
		t.Errorf("log = %q, want the pod's", logString(&log))
	}
}

// TestRunStored: a pod's stored marker ends the step while the pod still
// runs (the kubelet would report its end up to a second later), once
// Stored confirms it; a marker Stored does not confirm (a script printed
// it) does not end it, and no marker reaches the step's log.
func TestRunStored(t *testing.T) {
	for _, confirmed := range []bool{true, false} {
		cs := newFake(t)
		e := newExecutor(t, cs, nil)
		e.logStream = func(context.Context, string) (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader("packing\n" + executor.FormatStoredMarker(testKey) + "after\n")), nil
		}
		var log bytes.Buffer
		s := testStep(&log)
		var asked atomic.Int32
		s.Stored = func(context.Context) bool { asked.Add(1); return confirmed }
		done := runAsync(t.Context(), e, s)
		addPod(t, cs, getJob(t, cs, "imsbuild-0123456789abcdef0123"), "pod-1", running)
		select {
		case err := <-done:
			if !confirmed || err != nil {
				t.Fatalf("confirmed %v: Run() = %v while the pod runs", confirmed, err)
			}
		case <-time.After(time.Second):
			if confirmed {
				t.Fatal("Run() still waiting after a confirmed stored marker")
			}
		}
		if asked.Load() != 1 {
			t.Errorf("confirmed %v: Stored asked %d times, want once", confirmed, asked.Load())
		}
		if l := logString(&log); !strings.Contains(l, "packing") || strings.Contains(l, executor.StoredMarker) {
			t.Errorf("confirmed %v: log %q, want the pod's without the marker", confirmed, l)
		}
	}
}

func setPhase(t *testing.T, cs *fake.Clientset, name string, phase corev1.PodPhase) {
	t.Helper()
	p, err := cs.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = phase
	if _, err := cs.CoreV1().Pods(ns).UpdateStatus(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestRunPrivileged(t *testing.T) {
	cs := newFake(t)
	e := newExecutor(t, cs, nil)
	s := testStep(new(bytes.Buffer))
	s.Privileged = true
	done := runAsync(t.Context(), e, s)
	job := getJob(t, cs, "imsbuild-0123456789abcdef0123")
	sc := job.Spec.Template.Spec.Containers[0].SecurityContext
	if sc == nil || sc.Privileged == nil || !*sc.Privileged {
		t.Errorf("privileged step: security context %+v, want privileged", sc)
	}
	setCondition(t, cs, job, batchv1.JobComplete, "Completed", "")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestRunSecurityContext: only what needs it runs privileged (kiwi
// prepare, non-jailed customize, SSH, and a sandboxed step emulated on a
// node of another arch, which registers qemu with binfmt_misc); a
// sandboxed (jailed customize) step runs unprivileged, without privilege
// escalation, with the default capabilities and seccomp and AppArmor
// unconfined, so that the sandbox can make its user namespace; any other
// step gets the cluster's defaults.
func TestRunSecurityContext(t *testing.T) {
	unconfinedJail := &corev1.SecurityContext{
		Privileged:               ptr(false),
		AllowPrivilegeEscalation: ptr(false),
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined},
		AppArmorProfile:          &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined},
	}
	privileged := &corev1.SecurityContext{Privileged: ptr(true)}
	amd64 := testNode{name: "x1", arch: "amd64"}
	for _, tc := range []struct {
		name                  string
		privileged, sandboxed bool
		arch                  string
		nodes                 []testNode
		want                  *corev1.SecurityContext
	}{
		{"plain step", false, false, "", nil, nil},
		{"privileged", true, false, "x86_64", nil, privileged},
		{"sandboxed", false, true, "x86_64", nil, unconfinedJail},
		{"sandboxed on a native arm64 node", false, true, "aarch64", []testNode{amd64, arm64Node}, unconfinedJail},
		{"sandboxed emulated", false, true, "aarch64", []testNode{amd64}, privileged},
		{"plain step emulated", false, false, "aarch64", []testNode{amd64}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := newFake(t)
			addNodes(t, cs, tc.nodes...)
			e := newExecutor(t, cs, nil)
			s := testStep(new(bytes.Buffer))
			s.Privileged, s.Sandboxed, s.Arch = tc.privileged, tc.sandboxed, tc.arch
			done := runAsync(t.Context(), e, s)
			job := getJob(t, cs, "imsbuild-0123456789abcdef0123")
			got := job.Spec.Template.Spec.Containers[0].SecurityContext
			if !equality.Semantic.DeepEqual(got, tc.want) {
				t.Errorf("security context = %s, want %s", jsonOf(got), jsonOf(tc.want))
			}
			setCondition(t, cs, job, batchv1.JobComplete, "Completed", "")
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestRunSecretEnv: sensitive environment is in a Secret owned by the Job,
// named by the container, never in the Job.
func TestRunSecretEnv(t *testing.T) {
	cs := newFake(t)
	e := newExecutor(t, cs, nil)
	s := testStep(new(bytes.Buffer))
	s.SecretEnv = map[string]string{"AWS_SECRET_ACCESS_KEY": "s3cr3t-value"}
	done := runAsync(t.Context(), e, s)
	job := getJob(t, cs, "imsbuild-0123456789abcdef0123")
	js, _ := json.Marshal(job)
	if bytes.Contains(js, []byte("s3cr3t-value")) {
		t.Errorf("the job spec holds the secret value: %s", js)
	}
	ef := job.Spec.Template.Spec.Containers[0].EnvFrom
	if len(ef) != 1 || ef[0].SecretRef == nil {
		t.Fatalf("envFrom = %+v, want one secret", ef)
	}
	var sec *corev1.Secret
	waitFor(t, "secret owned by the job", func() bool {
		s, err := cs.CoreV1().Secrets(ns).Get(context.Background(), ef[0].SecretRef.Name, metav1.GetOptions{})
		sec = s
		return err == nil && len(s.OwnerReferences) == 1
	})
	if o := sec.OwnerReferences[0]; o.UID != job.UID || o.Kind != "Job" {
		t.Errorf("secret owner = %+v, want job %s", o, job.UID)
	}
	if string(sec.Data["AWS_SECRET_ACCESS_KEY"]) != "s3cr3t-value" {
		t.Errorf("secret data = %v", sec.Data)
	}
	setCondition(t, cs, job, batchv1.JobComplete, "Completed", "")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestRunFailed: a Failed Job is the step's error with the Job's reason
// and the log tail of its pods, the first and the retried one.
func TestRunFailed(t *testing.T) {
	cs := newFake(t)
	e := newExecutor(t, cs, nil)
	var log bytes.Buffer
	done := runAsync(t.Context(), e, testStep(&log))
	job := getJob(t, cs, "imsbuild-0123456789abcdef0123")
	addPod(t, cs, job, "pod-1", corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137}})
	waitFor(t, "first log", func() bool { return strings.Contains(logString(&log), "fake logs") })
	addPod(t, cs, job, "pod-2", running)
	waitFor(t, "retry log", func() bool { return strings.Count(logString(&log), "fake logs") == 2 })
	setCondition(t, cs, job, batchv1.JobFailed, "BackoffLimitExceeded", "Job has reached the specified backoff limit")
	err := <-done
	var je *JobError
	if !errors.As(err, &je) {
		t.Fatalf("Run() = %v, want *JobError", err)
	}
	if je.Reason != "BackoffLimitExceeded" || !strings.Contains(err.Error(), "fake logs") || !strings.Contains(err.Error(), "runs again in pod pod-2") {
		t.Errorf("Run() = %q, want the reason and the log tail of both pods", err)
	}
	if !strings.Contains(logString(&log), "runs again in pod pod-2") {
		t.Errorf("log = %q, want the retry noted", logString(&log))
	}
}

func TestRunImageNeverPull(t *testing.T) {
	cs := newFake(t)
	e := newExecutor(t, cs, nil)
	done := runAsync(t.Context(), e, testStep(new(bytes.Buffer)))
	job := getJob(t, cs, "imsbuild-0123456789abcdef0123")
	addPod(t, cs, job, "pod-1", corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull", Message: "not present"}})
	if err := <-done; err == nil || !strings.Contains(err.Error(), "ErrImageNeverPull") || !strings.Contains(err.Error(), "imsbuild-builder:test") {
		t.Errorf("Run() = %v, want ErrImageNeverPull naming the image", err)
	}
}

// TestRunAttach: two Runs of one key (two orchestrators) make one Job,
// and both finish with it.
func TestRunAttach(t *testing.T) {
	cs := newFake(t)
	var creates atomic.Int64
	cs.PrependReactor("create", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		creates.Add(1)
		return false, nil, nil
	})
	e1 := newExecutor(t, cs, nil)
	e2 := newExecutor(t, cs, nil)
	s1, s2 := testStep(new(bytes.Buffer)), testStep(new(bytes.Buffer))
	s2.BuildID = "build-2"
	d1 := runAsync(t.Context(), e1, s1)
	job := getJob(t, cs, "imsbuild-0123456789abcdef0123")
	d2 := runAsync(t.Context(), e2, s2)
	waitFor(t, "second create", func() bool { return creates.Load() == 2 })
	setCondition(t, cs, job, batchv1.JobComplete, "Completed", "")
	if err := <-d1; err != nil {
		t.Fatal(err)
	}
	if err := <-d2; err != nil {
		t.Fatal(err)
	}
	jobs, _ := cs.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{})
	if len(jobs.Items) != 1 || jobs.Items[0].Labels[LabelBuild] != "build-1" {
		t.Errorf("jobs = %d, want the first build's one", len(jobs.Items))
	}
}

// TestRunStarted: Run tells Step.Started the Job that runs the step, the
// one it created or the one of the key it attached to, before the step
// ends, so that a caller can name it while it runs (imsbuild serve's
// kubernetes_job).
func TestRunStarted(t *testing.T) {
	cs := newFake(t)
	e1 := newExecutor(t, cs, nil)
	e2 := newExecutor(t, cs, nil)
	var mu sync.Mutex
	started := map[string][]string{}
	step := func(build string) executor.Step {
		s := testStep(new(bytes.Buffer))
		s.BuildID = build
		s.Started = func(namespace, name string) {
			mu.Lock()
			defer mu.Unlock()
			started[build] = append(started[build], namespace+"/"+name)
		}
		return s
	}
	names := func(build string) string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(started[build], " ")
	}
	const want = ns + "/imsbuild-0123456789abcdef0123"
	d1 := runAsync(t.Context(), e1, step("build-1"))
	job := getJob(t, cs, "imsbuild-0123456789abcdef0123")
	waitFor(t, "the creator's Started", func() bool { return names("build-1") != "" })
	d2 := runAsync(t.Context(), e2, step("build-2"))
	waitFor(t, "the attacher's Started", func() bool { return names("build-2") != "" })
	setCondition(t, cs, job, batchv1.JobComplete, "Completed", "")
	for _, d := range []<-chan error{d1, d2} {
		if err := <-d; err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range []string{"build-1", "build-2"} {
		if got := names(b); got != want {
			t.Errorf("%s: Started(%s), want once with %s", b, got, want)
		}
	}
}

// TestRunAttachCancel: cancelling a Run that attached to another build's
// Job leaves that Job alone.
func TestRunAttachCancel(t *testing.T) {
	cs := newFake(t)
	e1, e2 := newExecutor(t, cs, nil), newExecutor(t, cs, nil)
	d1 := runAsync(t.Context(), e1, testStep(new(bytes.Buffer)))
	job := getJob(t, cs, "imsbuild-0123456789abcdef0123")
	ctx, cancel := context.WithCancel(t.Context())
	d2 := runAsync(ctx, e2, testStep(new(bytes.Buffer)))
	waitFor(t, "attach", func() bool { return len(cs.Actions()) > 0 && countVerb(cs, "get", "jobs") > 0 })
	cancel()
	if err := <-d2; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run() = %v, want context.Canceled", err)
	}
	if n := countVerb(cs, "delete", "jobs"); n != 0 {
		t.Errorf("%d job deletes, want none: the job is the other build's", n)
	}
	setCondition(t, cs, job, batchv1.JobComplete, "Completed", "")
	if err := <-d1; err != nil {
		t.Fatal(err)
	}
}

func countVerb(cs *fake.Clientset, verb, resource string) int {
	n := 0
	for _, a := range cs.Actions() {
		if a.GetVerb() == verb && a.GetResource().Resource == resource {
			n++
		}
	}
	return n
}

// TestRunAttachKeyMismatch: a Job of the name made for another key (a
// prefix collision, or a hostile object) is not taken for this step.
func TestRunAttachKeyMismatch(t *testing.T) {
	cs := newFake(t)
	other := strings.Replace(testKey, "f", "e", -1)
	other = testKey[:20] + other[20:]
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "imsbuild-0123456789abcdef0123", Namespace: ns,
		Labels: map[string]string{LabelManagedBy: "imsbuild"}, Annotations: map[string]string{AnnotationKey: other}}}
	if _, err := cs.BatchV1().Jobs(ns).Create(context.Background(), job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e := newExecutor(t, cs, nil)
	if err := e.Run(t.Context(), testStep(new(bytes.Buffer))); err == nil || !strings.Contains(err.Error(), other) {
		t.Errorf("Run() = %v, want an error naming the other key", err)
	}
}

// TestRunReplacesFailedJob: a failed Job of the key from an earlier build
// is deleted and the step runs again.
func TestRunReplacesFailedJob(t *testing.T) {
	cs := newFake(t)
	old := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "imsbuild-0123456789abcdef0123", Namespace: ns,
		Labels: map[string]string{LabelManagedBy: "imsbuild"}, Annotations: map[string]string{AnnotationKey: testKey}},
		Status: batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue}}}}
	old, err := cs.BatchV1().Jobs(ns).Create(context.Background(), old, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := newExecutor(t, cs, nil)
	done := runAsync(t.Context(), e, testStep(new(bytes.Buffer)))
	var job *batchv1.Job
	waitFor(t, "new job", func() bool {
		j, err := cs.BatchV1().Jobs(ns).Get(context.Background(), old.Name, metav1.GetOptions{})
		job = j
		return err == nil && j.UID != old.UID
	})
	setCondition(t, cs, job, batchv1.JobComplete, "Completed", "")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestRunCancel: cancelling deletes the Job with foreground propagation
// and returns once its pods are gone.
func TestRunCancel(t *testing.T) {
	cs := newFake(t)
	e := newExecutor(t, cs, nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := runAsync(ctx, e, testStep(new(bytes.Buffer)))
	job := getJob(t, cs, "imsbuild-0123456789abcdef0123")
	addPod(t, cs, job, "pod-1", running)
	waitFor(t, "pod in the informer", func() bool {
		p, _ := e.pods.List(labelsEverything())
		return len(p) == 1
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run() = %v, want context.Canceled", err)
	}
	var del k8stesting.DeleteAction
	for _, a := range cs.Actions() {
		if d, ok := a.(k8stesting.DeleteAction); ok && a.GetResource().Resource == "jobs" {
			del = d
		}
	}
	if del == nil || del.GetDeleteOptions().PropagationPolicy == nil || *del.GetDeleteOptions().PropagationPolicy != metav1.DeletePropagationForeground {
		t.Fatalf("job delete = %+v, want foreground propagation", del)
	}
	if pods, _ := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{}); len(pods.Items) != 0 {
		t.Errorf("%d pods left", len(pods.Items))
	}
	if _, err := cs.BatchV1().Jobs(ns).Get(context.Background(), job.Name, metav1.GetOptions{}); err == nil {
		t.Error("job left")
	}
}

// TestRunCancelBounded: pods that never go away do not hang the build.
func TestRunCancelBounded(t *testing.T) {
	cs := fake.NewClientset()
	cs.PrependReactor("create", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		a.(k8stesting.CreateAction).GetObject().(*batchv1.Job).UID = "uid-job"
		return false, nil, nil
	})
	cs.PrependReactor("delete", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, nil // a finalizer that never finishes
	})
	e := newExecutor(t, cs, func(c *Config) { c.CleanupTimeout = 200 * time.Millisecond })
	ctx, cancel := context.WithCancel(t.Context())
	done := runAsync(ctx, e, testStep(new(bytes.Buffer)))
	getJob(t, cs, "imsbuild-0123456789abcdef0123")
	waitFor(t, "job in the informer", func() bool { j, _ := e.jobs.List(labelsEverything()); return len(j) == 1 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "wait for its pods") {
			t.Errorf("Run() = %v, want cancelled and the cleanup timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the cleanup timeout")
	}
}

// TestRunJobDeletedUnderUs: a Job deleted by someone else while the step
// runs is created again (the key is still not built).
func TestRunJobDeletedUnderUs(t *testing.T) {
	cs := newFake(t)
	e := newExecutor(t, cs, nil)
	done := runAsync(t.Context(), e, testStep(new(bytes.Buffer)))
	job := getJob(t, cs, "imsbuild-0123456789abcdef0123")
	waitFor(t, "job in the informer", func() bool { j, _ := e.jobs.List(labelsEverything()); return len(j) == 1 })
	if err := cs.BatchV1().Jobs(ns).Delete(context.Background(), job.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var again *batchv1.Job
	waitFor(t, "job created again", func() bool {
		j, err := cs.BatchV1().Jobs(ns).Get(context.Background(), job.Name, metav1.GetOptions{})
		again = j
		return err == nil && j.UID != job.UID
	})
	setCondition(t, cs, again, batchv1.JobComplete, "Completed", "")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRunParallelism(t *testing.T) {
	cs := newFake(t)
	e := newExecutor(t, cs, func(c *Config) { c.Parallelism = 1 })
	k2 := strings.Repeat("fedcba9876543210", 4)
	d1 := runAsync(t.Context(), e, testStep(new(bytes.Buffer)))
	s2 := testStep(new(bytes.Buffer))
	s2.Key = k2
	job := getJob(t, cs, "imsbuild-0123456789abcdef0123")
	d2 := runAsync(t.Context(), e, s2)
	time.Sleep(100 * time.Millisecond) // a second Job would be created by now
	if _, err := cs.BatchV1().Jobs(ns).Get(context.Background(), "imsbuild-fedcba9876543210fedc", metav1.GetOptions{}); err == nil {
		t.Fatal("second job created while the first runs with parallelism 1")
	}
	setCondition(t, cs, job, batchv1.JobComplete, "Completed", "")
	if err := <-d1; err != nil {
		t.Fatal(err)
	}
	setCondition(t, cs, getJob(t, cs, "imsbuild-fedcba9876543210fedc"), batchv1.JobComplete, "Completed", "")
	if err := <-d2; err != nil {
		t.Fatal(err)
	}
}

func TestNewErrors(t *testing.T) {
	cs := fake.NewClientset()
	for _, cfg := range []Config{{}, {Image: "x", Parallelism: -1}, {Image: "x", BackoffLimit: ptr(int32(-1))}} {
		if _, err := New(cs, cfg); err == nil {
			t.Errorf("New(%+v) = nil error", cfg)
		}
	}
}

func labelsEverything() labels.Selector { return labels.Everything() }
