//go:build kubernetes

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imsbuild/imsbuild/executor/kubernetes"
	"github.com/imsbuild/imsbuild/internal/k8stest"
	"github.com/imsbuild/imsbuild/internal/s3test"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// kubeImages extends examples/busybox (image.compute customized) with
// eight more customized images, so that nine images are customized, two
// of them children of customized images: steps whose parents a pod takes
// from the remote cache.
func kubeImages() string {
	var b strings.Builder
	for i := 1; i <= 8; i++ {
		from := "image.base"
		switch {
		case i%2 == 0:
			from = "image.compute"
		case i >= 7:
			from = fmt.Sprintf("image.k%d", i-4)
		}
		fmt.Fprintf(&b, `
image "k%[1]d" {
  name = "busybox-k%[1]d"
  from = %[2]s
  customize {
    inline = "echo k%[1]d > /etc/role; mkdir -p /opt/k%[1]d; echo %[1]d > /opt/k%[1]d/n"
  }
}
`, i, from)
	}
	b.WriteString("\npublish \"dir\" \"more\" {\n  images = [")
	for i := 1; i <= 8; i++ {
		if i > 1 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "image.k%d", i)
	}
	b.WriteString("]\n  path   = \"out\"\n}\n")
	return b.String()
}

// jailProbe is an image, built only in the cluster and never published,
// whose jailed customize tries what the hardened sandbox must refuse in
// an unprivileged pod and fails the step (exit 1) when one succeeds. The
// sandbox binds the pod's /proc there and shares the pod's PID namespace
// (docs/security.md): /proc/1 is the pod's imsbuild run-step, whose
// environment holds the cache credentials; the probe checks so first, so
// that the checks on it mean something. The daemon it leaves must not
// outlive the script (the step would fail, its output pipe held).
const jailProbe = `
image "jailprobe" {
  name = "busybox-jailprobe"
  from = image.base
  customize {
    inline = <<-EOT
      escape() { echo "ESCAPE: $*"; exit 1; }
      if mount -t tmpfs none /mnt 2>/dev/null; then escape mounted a tmpfs; fi
      if unshare -m true 2>/dev/null; then escape made a mount namespace; fi
      if unshare -U true 2>/dev/null; then escape made a user namespace; fi
      if mknod /tmp/blk b 7 0 2>/dev/null; then escape made a block device; fi
      eff=$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status)
      if [ $(( 0x$eff >> 21 & 1 )) -ne 0 ]; then escape has CAP_SYS_ADMIN: $eff; fi
      tr '\0' ' ' < /proc/1/cmdline | grep -q 'internal run-step' || { echo "PROBE: /proc/1 is not the pod's run-step"; exit 1; }
      if cat /proc/1/environ >/dev/null 2>&1; then escape read the environment of the pod\'s pid 1; fi
      if ls /proc/1/root/ >/dev/null 2>&1; then escape reached the pod\'s root through /proc/1/root; fi
      for f in /proc/[0-9]*/environ; do
        if grep -q AWS_SECRET_ACCESS_KEY "$f" 2>/dev/null; then escape read the cache credentials in $f; fi
      done
      kill -KILL 1 2>/dev/null || true
      sleep 1
      if [ -e /var/run/secrets/kubernetes.io ]; then escape a service account token is mounted; fi
      [ "$(cut -d' ' -f1 /proc/$$/stat)" = "$$" ] || { echo "PROBE: /proc/$$ is not this shell"; exit 1; }
      setsid sleep 600 &
      echo "confinement probes passed"
    EOT
  }
}
`

// kubeExample is examples/busybox with kubeImages and extra appended.
func kubeExample(t *testing.T, extra string) string {
	t.Helper()
	dir := example(t)
	appendBuild(t, dir, kubeImages()+extra)
	return dir
}

// appendBuild appends text to dir's build.ims.hcl.
func appendBuild(t *testing.T, dir, text string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "build.ims.hcl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// kubeCache starts versitygw with a bucket for a remote cache, and
// returns the environment that reaches it and the cache's URL at prefix.
func kubeCache(t *testing.T, prefix string) (env []string, url string) {
	t.Helper()
	srv := s3test.Start(t)
	srv.CreateBucket(t, "ci-cache")
	env = []string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey}
	return env, "s3://ci-cache/" + prefix + "?endpoint=" + srv.Endpoint + "&path_style=true&region=" + srv.Region
}

// kubeBlock is the imsbuild block that builds every step as a Job in e's
// namespace: the loaded builder image, host network (the pods reach
// versitygw on 127.0.0.1, and kiwi the mirror), no retries.
func kubeBlock(e *k8stest.Env) string {
	return fmt.Sprintf(`
imsbuild {
  executor "kubernetes" {
    namespace         = %q
    image             = %q
    image_pull_policy = "Never"
    host_network      = true
    backoff_limit     = 0
  }
}
`, e.Namespace, k8stest.BuilderImageRef)
}

type kubeEvent struct {
	Time       time.Time
	Step       string
	Status     string
	Key        string
	Remote     bool
	DurationMS int64 `json:"duration_ms"`
}

func kubeEvents(t *testing.T, stdout string) []kubeEvent {
	t.Helper()
	var out []kubeEvent
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev kubeEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("--json line %q: %v", sc.Text(), err)
		}
		out = append(out, ev)
	}
	return out
}

// stepJobs returns the namespace's imsbuild Jobs by their step label.
func stepJobs(t *testing.T, e *k8stest.Env) map[string]batchv1.Job {
	t.Helper()
	l, err := e.Client.BatchV1().Jobs(e.Namespace).List(t.Context(), metav1.ListOptions{LabelSelector: kubernetes.LabelBuild})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]batchv1.Job{}
	for _, j := range l.Items {
		if _, dup := out[j.Labels[kubernetes.LabelStep]]; dup {
			t.Errorf("two Jobs for step %s", j.Labels[kubernetes.LabelStep])
		}
		out[j.Labels[kubernetes.LabelStep]] = j
	}
	return out
}

// jobPod returns the one pod of the Job of step; false, the test marked
// failed, when it has another number of pods.
func jobPod(t *testing.T, e *k8stest.Env, step, job string) (*corev1.Pod, bool) {
	t.Helper()
	pods, err := e.Client.CoreV1().Pods(e.Namespace).List(t.Context(), metav1.ListOptions{LabelSelector: kubernetes.LabelJob + "=" + job})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 1 {
		t.Errorf("%s's Job has %d pods, want 1", step, len(pods.Items))
		return nil, false
	}
	return &pods.Items[0], true
}

// privileged reports whether a container's security context makes it
// privileged.
func privileged(sc *corev1.SecurityContext) bool {
	return sc != nil && sc.Privileged != nil && *sc.Privileged
}

// podRun returns the finished step container's run of the Job's pod.
func podRun(t *testing.T, e *k8stest.Env, job string) (*corev1.ContainerStateTerminated, bool) {
	t.Helper()
	pods, err := e.Client.CoreV1().Pods(e.Namespace).List(t.Context(), metav1.ListOptions{LabelSelector: kubernetes.LabelJob + "=" + job})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Terminated != nil {
				return cs.State.Terminated, true
			}
		}
	}
	return nil, false
}

// TestKubernetesBuildBusybox: examples/busybox with nine customized
// images, built with the Kubernetes executor on the test cluster and a
// versitygw S3 cache (the pods on the host network reach it on
// 127.0.0.1): every image step runs as a Job of the build, the
// orchestrator builds none, the published files are those of a local
// build; a second run from another checkout is all cached and creates no
// Job.
func TestKubernetesBuildBusybox(t *testing.T) {
	e := k8stest.Cluster(t)
	e.LoadImage(t, testutil.RequireEnv(t, k8stest.BuilderImageEnv, "kubernetes"))
	env, url := kubeCache(t, "busybox")
	block := kubeBlock(e)
	images := []string{"image.base", "image.compute"}
	for i := 1; i <= 8; i++ {
		images = append(images, fmt.Sprintf("image.k%d", i))
	}

	local := kubeExample(t, "")
	start := time.Now()
	r := imsbuild(t, local, "build", "--json", "-j", "3", ".")
	if r.code != 0 {
		t.Fatalf("local build exit %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	localTime := time.Since(start)
	localSteps := map[string]int64{}
	for _, ev := range kubeEvents(t, r.stdout) {
		if ev.Status == "done" {
			localSteps[ev.Step] = ev.DurationMS
		}
	}

	dir := kubeExample(t, block+jailProbe)
	start = time.Now()
	r = imsbuildEnv(t, dir, env, "build", "--json", "-j", "3", "--kubeconfig", e.Kubeconfig, "--cache-to", url, ".")
	if r.code != 0 {
		t.Fatalf("kubernetes build exit %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	kubeTime := time.Since(start)
	evs := kubeEvents(t, r.stdout)
	started, done, keys := map[string]bool{}, map[string]kubeEvent{}, map[string]string{}
	for _, ev := range evs {
		if !strings.HasPrefix(ev.Step, "image.") {
			continue
		}
		switch ev.Status {
		case "started":
			if !ev.Remote {
				t.Errorf("%s started in the orchestrator, want a Job", ev.Step)
			}
			started[ev.Step] = true
		case "done":
			if !ev.Remote {
				t.Errorf("%s done in the orchestrator, want a Job", ev.Step)
			}
			done[ev.Step] = ev
		case "failed", "cached":
			t.Errorf("event %+v in a first build", ev)
		}
		if ev.Key != "" {
			keys[ev.Step] = ev.Key
		}
	}
	// A step is done once its pod succeeded; the Job controller marks
	// the Job Complete a little later.
	for _, j := range stepJobs(t, e) {
		if _, err := e.WaitJob(t.Context(), j.Name, time.Minute); err != nil {
			t.Error(err)
		}
	}
	jobs := stepJobs(t, e)
	builds := map[string]bool{}
	for _, id := range images {
		if !started[id] {
			t.Errorf("%s was not built remotely; started: %v", id, started)
		}
		j, ok := jobs[id]
		if !ok {
			t.Errorf("no Job for %s among %d", id, len(jobs))
			continue
		}
		builds[j.Labels[kubernetes.LabelBuild]] = true
		if j.Annotations[kubernetes.AnnotationKey] != keys[id] {
			t.Errorf("%s's Job has key %q, the build's key is %q", id, j.Annotations[kubernetes.AnnotationKey], keys[id])
		}
		if j.Status.Succeeded != 1 {
			t.Errorf("%s's Job: %d succeeded, %d failed", id, j.Status.Succeeded, j.Status.Failed)
		}
	}
	if len(jobs) != len(images)+1 || len(builds) != 1 {
		t.Errorf("%d Jobs of builds %v, want %d of one build", len(jobs), builds, len(images)+1)
	}
	if got, want := bootImages(t, dir), bootImages(t, local); len(want) != 3*len(images) || !equal(got, want) {
		t.Errorf("published boot images = %v, want the local build's %v", got, want)
	}
	// Privilege only where needed: every customize here is jailed, so no
	// pod is privileged; the customized ones run the sandbox as an
	// unprivileged root, seccomp unconfined for its user namespace.
	for _, id := range append(images, "image.jailprobe") {
		j, ok := jobs[id]
		if !ok {
			t.Errorf("no Job for %s", id)
			continue
		}
		pod, ok := jobPod(t, e, id, j.Name)
		if !ok {
			continue
		}
		sc := pod.Spec.Containers[0].SecurityContext
		if id == "image.base" {
			if sc != nil {
				t.Errorf("%s (no customize): security context %+v, want none", id, sc)
			}
			continue
		}
		if sc == nil || sc.Privileged == nil || *sc.Privileged || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeUnconfined || sc.Capabilities != nil {
			t.Errorf("%s (jailed customize): security context %+v, want unprivileged, no privilege escalation, default capabilities, seccomp unconfined", id, sc)
		}
	}
	// The step logs: the probe ran and found nothing, every sandboxed
	// step said it runs under the pod's pids limit (no cgroup of its
	// own), and its parent was unpacked (no overlay mount without
	// CAP_SYS_ADMIN, and so no tree unpacked for one) into the same
	// bytes (the digests above).
	logs, _ := filepath.Glob(filepath.Join(dir, ".imsbuild", "cache", "logs", "*.log"))
	probed, noCgroup, unpacked := false, 0, 0
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "ESCAPE") || strings.Contains(string(b), "PROBE:") {
			t.Errorf("%s:\n%s", l, b)
		}
		probed = probed || strings.Contains(string(b), "confinement probes passed")
		if strings.Contains(string(b), "no pids cgroup of its own") {
			noCgroup++
		}
		if strings.Contains(string(b), "(overlay unavailable: no CAP_SYS_ADMIN") && strings.Contains(string(b), "unpacking it instead") {
			unpacked++
		}
		// No tree unpacked for an overlay that cannot be mounted.
		if strings.Contains(string(b), "into the tree cache") {
			t.Errorf("%s unpacks a parent into the tree cache in an unprivileged pod:\n%s", l, b)
		}
	}
	if !probed {
		t.Errorf("no step log says the confinement probes passed (logs %v)", logs)
	}
	if want := len(images) - 1 + 1; noCgroup != want { // not image.base; image.jailprobe
		t.Errorf("%d step logs say the sandbox has no pids cgroup, want %d (the customized steps)", noCgroup, want)
	}
	if want := len(images); unpacked != want {
		t.Errorf("%d step logs say the parent was unpacked for want of CAP_SYS_ADMIN, want %d (the customized steps)", unpacked, want)
	}

	// The figures: per step, the local build's time, the remote step's
	// (Job create → outputs in the remote cache and the action record
	// read back), and the Job's own span (pod started → Job complete).
	var lines []string
	var overhead time.Duration
	for _, id := range images {
		j := jobs[id]
		line := fmt.Sprintf("%s: local %dms, Job %dms", id, localSteps[id], done[id].DurationMS)
		if j.Status.CompletionTime != nil {
			line += fmt.Sprintf(" (Job created → complete %v", j.Status.CompletionTime.Sub(j.CreationTimestamp.Time))
			if run, ok := podRun(t, e, j.Name); ok {
				line += fmt.Sprintf("; container started after %v, ran %v", run.StartedAt.Sub(j.CreationTimestamp.Time), run.FinishedAt.Sub(run.StartedAt.Time))
			}
			line += ")"
		}
		lines = append(lines, line)
		overhead += time.Duration(done[id].DurationMS-localSteps[id]) * time.Millisecond
	}
	sort.Strings(lines)
	t.Logf("step times:\n  %s", strings.Join(lines, "\n  "))
	t.Logf("%d images: local build %v, Kubernetes build %v; mean per-step overhead %v",
		len(images), localTime.Round(time.Millisecond), kubeTime.Round(time.Millisecond), (overhead / time.Duration(len(images))).Round(time.Millisecond))

	// Another checkout, an empty local cache, the first one's HMAC key:
	// all cached, no Job created (the first build's Jobs stay for their
	// TTL; a new one would carry another build label).
	again := kubeExample(t, block)
	// (A build without sensitive variables makes no HMAC key.)
	if hmacKey, err := os.ReadFile(filepath.Join(dir, ".imsbuild", "cache", "hmac.key")); err == nil {
		testutil.WriteFiles(t, filepath.Join(again, ".imsbuild", "cache"), map[string]string{"hmac.key": string(hmacKey)}, 0o600)
	} else if !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	r = imsbuildEnv(t, again, env, "build", "--json", "--kubeconfig", e.Kubeconfig, "--cache-to", url, ".")
	if r.code != 0 {
		t.Fatalf("second kubernetes build exit %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	got := events(t, r.stdout)
	for _, id := range images {
		if got[id] != "cached" {
			t.Errorf("second build: %s %s, want cached", id, got[id])
		}
	}
	after := stepJobs(t, e)
	if len(after) != len(jobs) {
		t.Errorf("second build: %d Jobs, want the first build's %d", len(after), len(jobs))
	}
	for id, j := range after {
		if jobs[id].UID != j.UID {
			t.Errorf("second build made a new Job for %s", id)
		}
	}
	if got, want := bootImages(t, again), bootImages(t, local); !equal(got, want) {
		t.Errorf("second build published %v, want %v", got, want)
	}
}

// TestKubernetesBuildDebianNode: examples/debian-node (real kiwi-ng from
// the Debian mirror) built with the Kubernetes executor and a versitygw
// S3 cache publishes the same bytes as a local build of it: rootfs,
// kernel, initrd, manifests and records. Every step runs as a Job; kiwi
// prepare's pod is privileged, the plain image step's is not. Both builds
// are cold: the local one has a new imsbuild cache and a new bootstrap
// cache, each pod starts from the builder image. As in
// TestDebianNodeEndToEnd, the epoch comes from the mirror's Release file
// in both builds; the host-network pods reach the mirror as the host
// does (no package proxy in a pod: kiwi downloads every package there).
// It takes 2–3 minutes on the 2-core test machine with a near mirror:
// the local build 45–57 s (kiwi prepare 38–47 s), the Kubernetes one
// 63–80 s (the prepare's container 42–54 s).
func TestKubernetesBuildDebianNode(t *testing.T) {
	e := k8stest.Cluster(t)
	testutil.RequireRoot(t)
	for _, tool := range []string{"kiwi-ng", "debootstrap", "mksquashfs", "unsquashfs", "bwrap"} {
		testutil.RequireTool(t, tool)
	}
	e.LoadImage(t, testutil.RequireEnv(t, k8stest.BuilderImageEnv, "kubernetes"))
	env, url := kubeCache(t, "debian-node")
	steps := []string{"image.base/prepare", "image.base", "image.compute"}

	local := copyExample(t, "debian-node")
	start := time.Now()
	r := imsbuild(t, local, "build", "--json", "--bootstrap-cache", filepath.Join(t.TempDir(), "bootstrap"), ".")
	if r.code != 0 {
		t.Fatalf("local build exit %d:\n%s\n%s", r.code, tail(r.stdout, 40), r.stderr)
	}
	localTime := time.Since(start)
	localSteps := map[string]int64{}
	for _, ev := range kubeEvents(t, r.stdout) {
		if ev.Status == "done" {
			localSteps[ev.Step] = ev.DurationMS
		}
	}
	if log, _ := os.ReadFile(filepath.Join(local, ".imsbuild/cache/logs/image.base.prepare.log")); strings.Contains(string(log), "restored from the bootstrap cache") {
		t.Errorf("the local build restored its bootstrap from a cache: not cold")
	}

	dir := copyExample(t, "debian-node")
	appendBuild(t, dir, kubeBlock(e))
	start = time.Now()
	r = imsbuildEnv(t, dir, env, "build", "--json", "--kubeconfig", e.Kubeconfig, "--cache-to", url, ".")
	if r.code != 0 {
		t.Fatalf("kubernetes build exit %d:\n%s\n%s", r.code, tail(r.stdout, 60), r.stderr)
	}
	kubeTime := time.Since(start)
	started, done := map[string]bool{}, map[string]kubeEvent{}
	for _, ev := range kubeEvents(t, r.stdout) {
		if !strings.HasPrefix(ev.Step, "image.") {
			continue
		}
		switch ev.Status {
		case "started", "done":
			if !ev.Remote {
				t.Errorf("%s %s in the orchestrator, want in a Job", ev.Step, ev.Status)
			}
			if ev.Status == "started" {
				started[ev.Step] = true
			} else {
				done[ev.Step] = ev
			}
		case "failed", "cached":
			t.Errorf("event %+v in a cold build", ev)
		}
	}
	for _, j := range stepJobs(t, e) {
		if _, err := e.WaitJob(t.Context(), j.Name, time.Minute); err != nil {
			t.Error(err)
		}
	}
	// By the step the Job's annotation names ("/" is no label character).
	jobs := map[string]batchv1.Job{}
	for _, j := range stepJobs(t, e) {
		jobs[j.Annotations[kubernetes.AnnotationStep]] = j
	}
	if len(jobs) != len(steps) {
		t.Errorf("%d Jobs, want %d", len(jobs), len(steps))
	}
	// Privilege only where needed: kiwi prepare runs privileged; the
	// image step that only packs the prepared root and the jailed
	// customize do not.
	wantPrivileged := map[string]bool{"image.base/prepare": true, "image.base": false, "image.compute": false}
	for _, id := range steps {
		if !started[id] {
			t.Errorf("%s was not built remotely; started: %v", id, started)
		}
		j, ok := jobs[id]
		if !ok {
			t.Errorf("no Job for %s among %v", id, jobs)
			continue
		}
		if j.Status.Succeeded != 1 {
			t.Errorf("%s's Job: %d succeeded, %d failed", id, j.Status.Succeeded, j.Status.Failed)
		}
		pod, ok := jobPod(t, e, id, j.Name)
		if !ok {
			continue
		}
		sc := pod.Spec.Containers[0].SecurityContext
		if got := privileged(sc); got != wantPrivileged[id] {
			t.Errorf("%s's pod privileged = %v, want %v", id, got, wantPrivileged[id])
		}
	}

	first, second := publishedTree(t, filepath.Join(local, "out")), publishedTree(t, filepath.Join(dir, "out"))
	if d := cmp.Diff(first, second); d != "" {
		t.Errorf("the Kubernetes build published another tree than the local build (-local +kubernetes):\n%s", d)
	}
	publishedImage(t, dir, "debian-node-bookworm")
	publishedImage(t, dir, "debian-compute-bookworm")

	var lines []string
	for _, id := range steps {
		line := fmt.Sprintf("%s: local %v, Job %v", id, time.Duration(localSteps[id])*time.Millisecond, time.Duration(done[id].DurationMS)*time.Millisecond)
		if j := jobs[id]; j.Status.CompletionTime != nil {
			if run, ok := podRun(t, e, j.Name); ok {
				line += fmt.Sprintf(" (container started after %v, ran %v)", run.StartedAt.Sub(j.CreationTimestamp.Time), run.FinishedAt.Sub(run.StartedAt.Time))
			}
		}
		lines = append(lines, line)
	}
	t.Logf("step times (cold):\n  %s", strings.Join(lines, "\n  "))
	t.Logf("local build %v, Kubernetes build %v", localTime.Round(time.Second), kubeTime.Round(time.Second))
}
