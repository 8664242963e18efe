//go:build kubernetes

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imsbuild/imsbuild/executor/kubernetes"
	"github.com/imsbuild/imsbuild/internal/k8stest"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

type sshWaiting struct {
	Step, Status string
	SSH          *struct {
		Host         string
		Port         int
		User         string
		HostKey      string `json:"host_key_fingerprint"`
		CompleteFile string `json:"complete_file"`
		Debug        bool
		Service      string
		DNSName      string `json:"dns_name"`
	}
}

// kubeInteractive starts `imsbuild build --json` with flags of dir with the Kubernetes executor and calls waiting with the waiting
// event; it returns the command's exit code and its other events.
func kubeInteractive(t *testing.T, e *k8stest.Env, dir string, env []string, url string, flags []string, waiting func(*exec.Cmd, sshWaiting)) (int, []string) {
	t.Helper()
	args := append([]string{"build", "--json", "--kubeconfig", e.Kubeconfig, "--cache-to", url}, flags...)
	if !slices.Contains(flags, ".") {
		args = append(args, ".")
	}
	cmd := exec.CommandContext(t.Context(), binary, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var statuses []string
	sc := bufio.NewScanner(stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev sshWaiting
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("event %q: %v", sc.Text(), err)
		}
		if strings.Contains(sc.Text(), "ssh-waiting") {
			t.Errorf("the SSH marker reached the user: %s", sc.Text())
		}
		if ev.Step == "image.compute" && ev.Status != "log" && ev.Status != "planned" {
			statuses = append(statuses, ev.Status)
		}
		if ev.Status == "waiting" {
			waiting(cmd, ev)
		}
	}
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		if ee.ExitCode() != 130 {
			t.Logf("build exit %d; stderr:\n%s", ee.ExitCode(), stderr.String())
		}
		return ee.ExitCode(), statuses
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, statuses
}

// TestKubernetesInteractiveSSH: `build --interactive image.compute` with
// the Kubernetes executor. The step's pod opens its SSH environment (the
// same sshenv, jailed) on the pod's address; the waiting event names a
// ClusterIP Service, owned by the step's Job, that kube-proxy leads to
// it; the real ssh client, through the Service, changes the image and
// touches the completion file; the pod packs, the build publishes the
// change. The Service goes with the step. A second build, interrupted
// while it waits, leaves no Job, pod or Service. A third, with an
// interactive block (jail = false, listen on loopback: the pod listens on
// its address all the same), is finished in the pod's environment with
// the image at /mnt/image.
func TestKubernetesInteractiveSSH(t *testing.T) {
	e := k8stest.Cluster(t)
	e.LoadImage(t, testutil.RequireEnv(t, k8stest.BuilderImageEnv, "kubernetes"))
	testutil.RequireTool(t, "ssh")
	testutil.RequireTool(t, "unsquashfs")
	key, _ := testutil.SSHKey(t)
	env, url := kubeCache(t, "ssh")
	dir := example(t)
	appendBuild(t, dir, kubeBlock(e))

	ssh := func(ev sshWaiting, command string) ([]byte, error) {
		return exec.CommandContext(t.Context(), "ssh", "-i", key, "-p", strconv.Itoa(ev.SSH.Port), "-o", "StrictHostKeyChecking=no",
			"-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
			ev.SSH.User+"@"+ev.SSH.Host, command).CombinedOutput()
	}
	// connect waits until the Service leads somewhere (kube-proxy writes
	// its rules once the pod is an endpoint: a second or so).
	connect := func(ev sshWaiting) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			out, err := ssh(ev, "true")
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("ssh through the Service %s (%s:%d): %v\n%s", ev.SSH.Service, ev.SSH.Host, ev.SSH.Port, err, out)
			}
			time.Sleep(time.Second)
		}
	}
	checkService := func(ev sshWaiting) {
		t.Helper()
		if ev.Step != "image.compute" || ev.SSH == nil || ev.SSH.Port != kubernetes.SSHPort || ev.SSH.CompleteFile == "" {
			t.Fatalf("waiting event = %+v", ev)
		}
		ns, name, _ := strings.Cut(ev.SSH.Service, "/")
		if ns != e.Namespace || ev.SSH.DNSName != name+"."+ns+".svc.cluster.local" {
			t.Errorf("waiting event names service %q, DNS %q; want one in %s", ev.SSH.Service, ev.SSH.DNSName, e.Namespace)
		}
		svc, err := e.Client.CoreV1().Services(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the waiting event's service: %v", err)
		}
		if svc.Spec.ClusterIP != ev.SSH.Host || net.ParseIP(ev.SSH.Host) == nil {
			t.Errorf("waiting event host %s, service's cluster IP %s", ev.SSH.Host, svc.Spec.ClusterIP)
		}
		job, err := e.Client.BatchV1().Jobs(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the service's job: %v", err)
		}
		if o := svc.OwnerReferences; len(o) != 1 || o[0].UID != job.UID || job.Annotations[kubernetes.AnnotationStep] != "image.compute" {
			t.Errorf("service owners %+v, want the Job of image.compute %s", o, job.UID)
		}
	}
	// podPrivileged reports whether the waiting step's pod is privileged,
	// from its spec in the API; an unprivileged one must be the
	// sandbox's (no privilege escalation, seccomp unconfined).
	podPrivileged := func(ev sshWaiting) bool {
		t.Helper()
		ns, name, _ := strings.Cut(ev.SSH.Service, "/")
		pods, err := e.Client.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: kubernetes.LabelJob + "=" + name})
		if err != nil || len(pods.Items) != 1 {
			t.Fatalf("the waiting step's pods: %d, %v; want one", len(pods.Items), err)
		}
		sc := pods.Items[0].Spec.Containers[0].SecurityContext
		if sc == nil || sc.Privileged == nil {
			t.Fatalf("the waiting step's pod has security context %+v, want privileged or sandboxed", sc)
		}
		if !*sc.Privileged && (sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.SeccompProfile == nil ||
			sc.SeccompProfile.Type != corev1.SeccompProfileTypeUnconfined || sc.Capabilities != nil) {
			t.Errorf("the waiting step's unprivileged pod has security context %+v, want the sandbox's", sc)
		}
		return *sc.Privileged
	}

	flags := []string{"--interactive", "image.compute", "--ssh-public-key", key + ".pub", "--ssh-timeout", "5m"}
	var sshOut []byte
	start := time.Now()
	var waited time.Duration
	var waitingEvent sshWaiting
	code, statuses := kubeInteractive(t, e, dir, env, url, flags, func(_ *exec.Cmd, ev sshWaiting) {
		waited = time.Since(start)
		waitingEvent = ev
		checkService(ev)
		if podPrivileged(ev) {
			t.Error("the jailed SSH environment's pod is privileged, want it unprivileged")
		}
		connect(ev)
		// The session is the sandbox's: the pod's run-step (pid 1 of
		// the pod's /proc, bound) and its environment are out of reach.
		if out, err := ssh(ev, "tr '\\0' ' ' < /proc/1/cmdline; cat /proc/1/environ >/dev/null 2>&1 && echo ESCAPE; ls /proc/1/root/ >/dev/null 2>&1 && echo ESCAPE; true"); err != nil ||
			!strings.Contains(string(out), "run-step") || strings.Contains(string(out), "ESCAPE") {
			t.Errorf("ssh probe of the pod's pid 1: %v\n%s", err, out)
		}
		var err error
		sshOut, err = ssh(ev, "cat /etc/hostname; echo edited over ssh > /etc/interactive-mark; touch /tmp/complete")
		if err != nil {
			t.Fatalf("ssh: %v\n%s", err, sshOut)
		}
	})
	if code != 0 {
		t.Fatalf("interactive kubernetes build exit %d, image.compute %v", code, statuses)
	}
	t.Logf("build start → waiting event %v, whole build %v", waited.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if want := []string{"started", "waiting", "resumed", "done"}; strings.Join(statuses, " ") != strings.Join(want, " ") {
		t.Errorf("image.compute events %v, want %v", statuses, want)
	}
	if strings.TrimSpace(string(sshOut)) != "compute" {
		t.Errorf("ssh saw /etc/hostname %q, want the customized image's \"compute\"", sshOut)
	}
	if ev := waitingEvent; ev.SSH.CompleteFile != "/tmp/complete" {
		t.Errorf("jailed environment's complete file %q", ev.SSH.CompleteFile)
	}
	published(t, dir, "etc/interactive-mark", "edited over ssh\n")
	sel := metav1.ListOptions{LabelSelector: kubernetes.LabelManagedBy + "=imsbuild"}
	if svcs, err := e.Client.CoreV1().Services(e.Namespace).List(t.Context(), sel); err != nil || len(svcs.Items) != 0 {
		t.Errorf("services after the build: %v, %v; want none", svcs, err)
	}

	// Interrupted while waiting: the build's Job, pod and Service go.
	var build string
	code, _ = kubeInteractive(t, e, dir, env, url, flags, func(cmd *exec.Cmd, ev sshWaiting) {
		checkService(ev)
		_, name, _ := strings.Cut(ev.SSH.Service, "/")
		job, err := e.Client.BatchV1().Jobs(e.Namespace).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		build = job.Labels[kubernetes.LabelBuild]
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
	})
	if code != 130 {
		t.Errorf("interrupted build exit %d, want 130", code)
	}
	if build == "" {
		t.Fatal("the second build never waited")
	}
	sel = metav1.ListOptions{LabelSelector: kubernetes.LabelBuild + "=" + build}
	jobs, err := e.Client.BatchV1().Jobs(e.Namespace).List(t.Context(), sel)
	if err != nil || len(jobs.Items) != 0 {
		t.Errorf("jobs of the interrupted build: %d, %v; want none", len(jobs.Items), err)
	}
	pods, err := e.Client.CoreV1().Pods(e.Namespace).List(t.Context(), sel)
	if err != nil || len(pods.Items) != 0 {
		t.Errorf("pods of the interrupted build: %d, %v; want none", len(pods.Items), err)
	}
	svcs, err := e.Client.CoreV1().Services(e.Namespace).List(t.Context(), sel)
	if err != nil || len(svcs.Items) != 0 {
		t.Errorf("services of the interrupted build: %d, %v; want none", len(svcs.Items), err)
	}

	// An interactive block, not jailed.
	hcl, err := os.ReadFile(filepath.Join(dir, "build.ims.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	// The key file inside the build directory: the pod loads the build
	// from its bundle, which holds nothing outside it.
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	testutil.WriteFiles(t, dir, map[string]string{"keys/person.pub": string(pub)}, 0o644)
	in := fmt.Sprintf(`image "compute" {
  interactive {
    public_keys = [file(%q)]
    jail        = false
    listen      = "127.0.0.1:0"
    timeout     = "5m"
  }`, "keys/person.pub")
	if !strings.Contains(string(hcl), `image "compute" {`) {
		t.Fatal("no image compute in the example")
	}
	testutil.WriteFiles(t, dir, map[string]string{"build.ims.hcl": strings.Replace(string(hcl), `image "compute" {`, in, 1)}, 0o644)
	// Published anew: the first build's images go (their directories
	// are named by digest).
	if err := os.RemoveAll(filepath.Join(dir, "out")); err != nil {
		t.Fatal(err)
	}
	code, statuses = kubeInteractive(t, e, dir, env, url, nil, func(_ *exec.Cmd, ev sshWaiting) {
		checkService(ev)
		if !podPrivileged(ev) {
			t.Error("the SSH environment with jail = false runs in an unprivileged pod, want a privileged one")
		}
		if ev.SSH.CompleteFile != "/mnt/image/complete" {
			t.Errorf("non-jailed complete file %q", ev.SSH.CompleteFile)
		}
		connect(ev)
		if out, err := ssh(ev, "echo from the block > /mnt/image/etc/block-mark; touch "+ev.SSH.CompleteFile); err != nil {
			t.Fatalf("ssh: %v\n%s", err, out)
		}
	})
	if code != 0 || strings.Join(statuses, " ") != "started waiting resumed done" {
		t.Fatalf("build with an interactive block exit %d, image.compute %v", code, statuses)
	}
	published(t, dir, "etc/block-mark", "from the block\n")
}

// published checks that exactly one of the two published root file
// systems (busybox-compute's) has file with content.
func published(t *testing.T, dir, file, content string) {
	t.Helper()
	rootfs, _ := filepath.Glob(filepath.Join(dir, "out", "boot-images", "*", "rootfs"))
	var marked int
	for _, r := range rootfs {
		out, err := exec.Command("unsquashfs", "-cat", r, file).Output()
		if err == nil {
			marked++
			if string(out) != content {
				t.Errorf("%s: /%s = %q, want %q", r, file, out, content)
			}
		}
	}
	if len(rootfs) != 2 || marked != 1 {
		t.Errorf("%d published root file systems, %d with /%s; want 2, 1", len(rootfs), marked, file)
	}
}

// TestKubernetesDebugOnFailureSSH: `build --debug-on-failure` with the
// Kubernetes executor: a customize that fails opens the debug shell in
// its pod, reached through the step's Service; the person looks at the
// root and marks it failed; the step fails, and its Service goes.
func TestKubernetesDebugOnFailureSSH(t *testing.T) {
	e := k8stest.Cluster(t)
	e.LoadImage(t, testutil.RequireEnv(t, k8stest.BuilderImageEnv, "kubernetes"))
	testutil.RequireTool(t, "ssh")
	key, _ := testutil.SSHKey(t)
	env, url := kubeCache(t, "debug")
	dir := example(t)
	appendBuild(t, dir, `
image "broken" {
  from = image.base
  customize {
    inline = "echo half done > /etc/half-done; exit 3"
  }
}
`+kubeBlock(e))

	var seen []byte
	var service string
	flags := []string{"--debug-on-failure", "--ssh-public-key", key + ".pub", "--ssh-timeout", "5m", ".", "image.broken"}
	code, _ := kubeInteractive(t, e, dir, env, url, flags, func(_ *exec.Cmd, ev sshWaiting) {
		if ev.Step != "image.broken" || ev.SSH == nil || !ev.SSH.Debug || ev.SSH.Port != kubernetes.SSHPort || ev.SSH.Service == "" {
			t.Fatalf("waiting event = %+v", ev)
		}
		service = ev.SSH.Service
		args := []string{"-i", key, "-p", strconv.Itoa(ev.SSH.Port), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
			"-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", ev.SSH.User + "@" + ev.SSH.Host}
		deadline := time.Now().Add(60 * time.Second)
		for {
			out, err := exec.CommandContext(t.Context(), "ssh", append(args, "true")...).CombinedOutput()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("ssh through %s: %v\n%s", service, err, out)
			}
			time.Sleep(time.Second)
		}
		failed := strings.TrimSuffix(ev.SSH.CompleteFile, "complete") + "failed"
		out, err := exec.CommandContext(t.Context(), "ssh", append(args, "cat /etc/half-done; touch "+failed)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ssh: %v\n%s", err, out)
		}
		seen = out
	})
	if code != 1 {
		t.Errorf("build exit %d, want 1 (the step failed)", code)
	}
	if string(seen) != "half done\n" {
		t.Errorf("debug shell saw %q, want the failed root's /etc/half-done", seen)
	}
	if service == "" {
		t.Fatal("no debug shell opened")
	}
	ns, name, _ := strings.Cut(service, "/")
	if _, err := e.Client.CoreV1().Services(ns).Get(t.Context(), name, metav1.GetOptions{}); err == nil {
		t.Errorf("service %s left after the step failed", service)
	}
}
