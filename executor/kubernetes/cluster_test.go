//go:build kubernetes

package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imsbuild/imsbuild/executor"
	"github.com/imsbuild/imsbuild/internal/k8stest"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// clusterExecutor returns the test cluster's namespace and an Executor on
// it running the builder image with command.
func clusterExecutor(t *testing.T, command ...string) (*k8stest.Env, func() *Executor) {
	t.Helper()
	env := k8stest.Cluster(t)
	env.LoadImage(t, testutil.RequireEnv(t, k8stest.BuilderImageEnv, "kubernetes"))
	return env, func() *Executor {
		e, err := New(env.Client, Config{
			Namespace: env.Namespace, Image: k8stest.BuilderImageRef, ImagePullPolicy: corev1.PullNever,
			Command: command, BackoffLimit: ptr(int32(1)), CleanupTimeout: time.Minute,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e.Close() })
		return e
	}
}

func clusterStep(key string, log *testutil.SyncBuffer, args ...string) executor.Step {
	return executor.Step{BuildID: "test", Step: "image.t", Key: key, Args: args,
		Env: map[string]string{"PLAIN": "plain-value"}, SecretEnv: map[string]string{"SECRET": "secret-value"}, Log: log}
}

func waitLog(t *testing.T, env *k8stest.Env, log *testutil.SyncBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for !strings.Contains(log.String(), s) {
		if time.Now().After(deadline) {
			pods, _ := env.Client.CoreV1().Pods(env.Namespace).List(context.Background(), metav1.ListOptions{})
			for _, p := range pods.Items {
				t.Logf("pod %s: %s %+v", p.Name, p.Status.Phase, p.Status.ContainerStatuses)
			}
			t.Fatalf("log has no %q: %q", s, log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestKubernetesExecutorRun: imsbuild runs in a Job of the builder image,
// its output reaches Step.Log, the secret environment reaches the step.
func TestKubernetesExecutorRun(t *testing.T) {
	_, newExec := clusterExecutor(t, "sh", "-c")
	var log testutil.SyncBuffer
	start := time.Now()
	err := newExec().Run(t.Context(), clusterStep(testKey, &log, `imsbuild version && echo "env $PLAIN $SECRET"`))
	if err != nil {
		t.Fatalf("Run() = %v\nlog:\n%s", err, log.String())
	}
	t.Logf("Job create → complete with its log: %v", time.Since(start))
	if !strings.Contains(log.String(), "imsbuild") || !strings.Contains(log.String(), "env plain-value secret-value") {
		t.Errorf("log = %q, want imsbuild's version and both variables", log.String())
	}
}

// TestKubernetesExecutorSandboxedPids: a sandboxed step's pod (not
// privileged, where the sandbox has no pids cgroup of its own) cannot fork
// past the pod's pids limit (the test cluster's kubelet sets podPidsLimit
// 1024; scripts/k8s/cluster.sh): a loop of 1,500 background sleeps stops
// at the limit, and the pod lives on.
func TestKubernetesExecutorSandboxedPids(t *testing.T) {
	_, newExec := clusterExecutor(t, "sh", "-c")
	var log testutil.SyncBuffer
	s := clusterStep(testKey, &log, `(i=0; while [ $i -lt 1500 ]; do sleep 60 & i=$((i+1)); done) 2>/dev/null
n=0; for p in /proc/[0-9]*; do n=$((n+1)); done
kill $(pgrep -x sleep) 2>/dev/null
echo "processes: $n"`)
	s.Sandboxed = true
	if err := newExec().Run(t.Context(), s); err != nil {
		t.Fatalf("Run() = %v\nlog:\n%s", err, log.String())
	}
	var n int
	if _, err := fmt.Sscanf(log.String()[strings.Index(log.String(), "processes: "):], "processes: %d", &n); err != nil {
		t.Fatalf("log %q: %v", log.String(), err)
	}
	t.Logf("%d processes in the pod at the end of the fork loop", n)
	if n < 500 || n > 1024 {
		t.Errorf("%d processes in the pod after a loop of 1,500 forks, want the loop stopped by the limit of 1024", n)
	}
}

// TestKubernetesExecutorFailure: a failing step is a JobError with its
// log tail, after the retries.
func TestKubernetesExecutorFailure(t *testing.T) {
	_, newExec := clusterExecutor(t, "sh", "-c")
	var log testutil.SyncBuffer
	err := newExec().Run(t.Context(), clusterStep(testKey, &log, "echo the step broke; exit 3"))
	var je *JobError
	if !errors.As(err, &je) || je.Reason != "BackoffLimitExceeded" || strings.Count(err.Error(), "the step broke") != 2 {
		t.Fatalf("Run() = %v, want a JobError with the log of both attempts", err)
	}
}

// TestKubernetesExecutorPodKilled: a pod deleted mid-step is retried by
// the Job controller and the step succeeds, with both pods' logs.
func TestKubernetesExecutorPodKilled(t *testing.T) {
	env, newExec := clusterExecutor(t, "sh", "-c")
	var log testutil.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- newExec().Run(t.Context(), clusterStep(testKey, &log, "trap 'exit 143' TERM; echo attempt; sleep 8 & wait; echo finished"))
	}()
	waitLog(t, env, &log, "attempt")
	name, _ := JobName(testKey)
	pods, err := env.Client.CoreV1().Pods(env.Namespace).List(t.Context(), metav1.ListOptions{LabelSelector: LabelJob + "=" + name})
	if err != nil {
		t.Fatal(err)
	}
	// Kill the running pod (under load the Job controller may briefly
	// have made a second one that it is deleting).
	killed := false
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			if err := env.Client.CoreV1().Pods(env.Namespace).Delete(t.Context(), p.Name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			killed = true
			break
		}
	}
	if !killed {
		t.Fatalf("no running pod to kill among %d", len(pods.Items))
	}
	if err := <-done; err != nil {
		t.Fatalf("Run() = %v\nlog:\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "runs again in pod") || !strings.Contains(log.String(), "finished") {
		t.Errorf("log = %q, want the retry's log to the end", log.String())
	}
}

// TestKubernetesExecutorCancel: cancelling leaves no Job and no pod.
func TestKubernetesExecutorCancel(t *testing.T) {
	env, newExec := clusterExecutor(t, "sh", "-c")
	var log testutil.SyncBuffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- newExec().Run(ctx, clusterStep(testKey, &log, "echo started; sleep 600")) }()
	waitLog(t, env, &log, "started")
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "wait for its pods") {
		t.Fatalf("Run() = %v, want context.Canceled after the pods are gone", err)
	}
	sel := metav1.ListOptions{LabelSelector: LabelManagedBy + "=imsbuild"}
	jobs, _ := env.Client.BatchV1().Jobs(env.Namespace).List(t.Context(), sel)
	pods, _ := env.Client.CoreV1().Pods(env.Namespace).List(t.Context(), sel)
	if len(jobs.Items) != 0 || len(pods.Items) != 0 {
		t.Errorf("%d jobs and %d pods left after cancel", len(jobs.Items), len(pods.Items))
	}
}

// TestKubernetesExecutorTwoOrchestrators: two executors that need one key
// at once share one Job: the step runs in one pod.
func TestKubernetesExecutorTwoOrchestrators(t *testing.T) {
	env, newExec := clusterExecutor(t, "sh", "-c")
	var logs [2]testutil.SyncBuffer
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		e := newExec()
		wg.Go(func() { errs[i] = e.Run(t.Context(), clusterStep(testKey, &logs[i], "echo once; sleep 3")) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Run %d = %v", i, err)
		}
	}
	name, _ := JobName(testKey)
	pods, err := env.Client.CoreV1().Pods(env.Namespace).List(t.Context(), metav1.ListOptions{LabelSelector: LabelJob + "=" + name})
	if err != nil || len(pods.Items) != 1 {
		t.Errorf("pods of the key = %d, %v; want 1", len(pods.Items), err)
	}
}
