//go:build kubernetes

package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/internal/k8stest"
	"github.com/imsbuild/imsbuild/internal/testutil"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// buildImage runs `imsbuild-image builder` (built from this package) with
// the machine's base cache, as `make builder-image` does, and returns the
// manifest digest it prints.
func buildImage(t *testing.T, prog, out string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), prog, "builder", "-o", out)
	cmd.Dir = "../.."
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("imsbuild-image builder: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// TestKubernetesBuilderImage: two builds of the builder image from this tree
// give the same digest and the same bytes, and the image runs imsbuild,
// kiwi-ng and the steps' tools in a Job in the cluster.
func TestKubernetesBuilderImage(t *testing.T) {
	e := k8stest.Cluster(t)
	prog := filepath.Join(t.TempDir(), "imsbuild-image")
	if out, err := exec.Command("go", "build", "-o", prog, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	first := buildImage(t, prog, filepath.Join(dir, "a.tar"))
	second := buildImage(t, prog, filepath.Join(dir, "b.tar"))
	if first != second || !strings.HasPrefix(first, "sha256:") {
		t.Fatalf("two builds: %q and %q, want one digest", first, second)
	}
	if testutil.FileSHA256(t, filepath.Join(dir, "a.tar")) != testutil.FileSHA256(t, filepath.Join(dir, "b.tar")) {
		t.Errorf("two builds of %s differ in bytes", first)
	}

	e.LoadImage(t, filepath.Join(dir, "a.tar"))
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "builder-image"},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy:                corev1.RestartPolicyNever,
				AutomountServiceAccountToken: ptr.To(false),
				Containers: []corev1.Container{{
					Name:            "step",
					Image:           k8stest.BuilderImageRef,
					ImagePullPolicy: corev1.PullNever,
					Command:         []string{"sh", "-c", "imsbuild version && kiwi-ng --version && mksquashfs -version | head -n1 && bwrap --version && qemu-aarch64-static --version && ls /usr/bin/ | grep qemu"},
				}},
			}},
		},
	}
	ctx := t.Context()
	if _, err := e.Client.BatchV1().Jobs(e.Namespace).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	logs, err := e.WaitJob(ctx, job.Name, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"imsbuild ", "KIWI (next generation) version", "mksquashfs version", "bubblewrap ", "qemu-aarch64 version"} {
		if !strings.Contains(logs, want) {
			t.Errorf("job log lacks %q:\n%s", want, logs)
		}
	}
	// qemu-user-static's other emulators are left out.
	if strings.Contains(logs, "qemu-arm-static") || strings.Contains(logs, "qemu-x86_64-static") {
		t.Errorf("the image has more emulators than qemu-aarch64-static:\n%s", logs)
	}
}
