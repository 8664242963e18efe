package k8stest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/internal/testutil"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Environment variables the test setup sets.
const (
	// KubeconfigEnv names the admin kubeconfig of the test cluster.
	KubeconfigEnv = "IMSBUILD_TEST_KUBECONFIG"
	// ContainerdEnv names the socket of the node's containerd; by default
	// containerd/containerd.sock beside the kubeconfig, where
	// scripts/k8s/cluster.sh puts it.
	ContainerdEnv = "IMSBUILD_TEST_CONTAINERD"
	// BuilderImageEnv names the builder image's OCI archive
	// (bin/builder-image.tar, from `make builder-image`).
	BuilderImageEnv = "IMSBUILD_TEST_BUILDER_IMAGE"
)

// BuilderImageRef is the reference the builder image archive carries.
const BuilderImageRef = "imsbuild.local/builder:latest"

// Env is one test's view of the cluster.
type Env struct {
	Kubeconfig string // admin kubeconfig path
	Namespace  string // fresh for the test, deleted at its cleanup
	Config     *rest.Config
	Client     kubernetes.Interface
	containerd string
}

// Cluster returns the test cluster with a new namespace for t, deleted (and
// its pods with it) when t ends.
func Cluster(t testing.TB) *Env {
	t.Helper()
	kubeconfig := testutil.RequireEnv(t, KubeconfigEnv, "kubernetes")
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatalf("kubeconfig %s: %v", kubeconfig, err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sock := os.Getenv(ContainerdEnv)
	if sock == "" {
		sock = filepath.Join(filepath.Dir(kubeconfig), "containerd", "containerd.sock")
	}
	e := &Env{Kubeconfig: kubeconfig, Config: cfg, Client: client, containerd: sock}
	ctx := t.Context()
	ns, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: namespacePrefix(t.Name())},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	e.Namespace = ns.Name
	t.Cleanup(func() { e.deleteNamespace(t) })
	// The service account controller adds "default" to a new namespace;
	// until it has, pods cannot be created there.
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := client.CoreV1().ServiceAccounts(e.Namespace).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("namespace %s: no default service account: %v", e.Namespace, err)
	}
	return e
}

var nonName = regexp.MustCompile(`[^a-z0-9]+`)

// namespacePrefix turns a test name into a namespace's generateName.
func namespacePrefix(test string) string {
	s := strings.Trim(nonName.ReplaceAllString(strings.ToLower(test), "-"), "-")
	if len(s) > 40 {
		s = strings.TrimRight(s[:40], "-")
	}
	return "t-" + s + "-"
}

// deleteNamespace deletes the test's namespace and waits (bounded) until it
// is gone, so that no pod of the test outlives it.
func (e *Env) deleteNamespace(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	fg := metav1.DeletePropagationForeground
	err := e.Client.CoreV1().Namespaces().Delete(ctx, e.Namespace, metav1.DeleteOptions{PropagationPolicy: &fg})
	if apierrors.IsNotFound(err) {
		return
	}
	if err != nil {
		t.Errorf("delete namespace %s: %v", e.Namespace, err)
		return
	}
	err = wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := e.Client.CoreV1().Namespaces().Get(ctx, e.Namespace, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Errorf("namespace %s still there after cleanup: %v", e.Namespace, err)
	}
}

// LoadImage imports the OCI archive (an image layout in a tar, as
// internal/ociimage writes) into the node's containerd, under the reference
// its index names.
func (e *Env) LoadImage(t testing.TB, ociArchive string) {
	t.Helper()
	ctr := testutil.RequireTool(t, "ctr")
	cmd := exec.CommandContext(t.Context(), ctr, "--address", e.containerd, "-n", "k8s.io", "images", "import", ociArchive)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ctr images import %s: %v\n%s", ociArchive, err, out)
	}
}

// WaitJob waits until the Job name in the test's namespace completes or
// fails, and returns its pods' logs. A failed Job, or none finished within
// timeout, is an error carrying the logs.
func (e *Env) WaitJob(ctx context.Context, name string, timeout time.Duration) (string, error) {
	var job *batchv1.Job
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		j, err := e.Client.BatchV1().Jobs(e.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		job = j
		for _, c := range j.Status.Conditions {
			if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	logs := e.jobLogs(ctx, name)
	if err != nil {
		return logs, fmt.Errorf("job %s: %w; pods:\n%s", name, err, logs)
	}
	for _, c := range job.Status.Conditions {
		if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
			return logs, fmt.Errorf("job %s failed: %s: %s; pods:\n%s", name, c.Reason, c.Message, logs)
		}
	}
	return logs, nil
}

// jobLogs returns the status and log of every pod of the Job name.
func (e *Env) jobLogs(ctx context.Context, name string) string {
	pods, err := e.Client.CoreV1().Pods(e.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + name})
	if err != nil {
		return fmt.Sprintf("(list pods: %v)", err)
	}
	var b strings.Builder
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "pod %s: %s", p.Name, p.Status.Phase)
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil {
				fmt.Fprintf(&b, " (%s: %s %s)", cs.Name, w.Reason, w.Message)
			}
		}
		b.WriteString("\n")
		raw, err := e.Client.CoreV1().Pods(e.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
		if err != nil {
			fmt.Fprintf(&b, "(log: %v)\n", err)
			continue
		}
		b.Write(raw)
	}
	return b.String()
}
