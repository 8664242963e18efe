//go:build kubernetes

package k8stest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/imsbuild/imsbuild/internal/ociimage"
	"github.com/imsbuild/imsbuild/internal/testutil"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// busyboxImage writes an image holding only busybox-static (run as
// "/bin/busybox APPLET") and an empty /mnt, named ref, and returns its archive.
func busyboxImage(t *testing.T, ref string) string {
	t.Helper()
	data, err := os.ReadFile(testutil.RequireTool(t, "busybox"))
	if err != nil {
		t.Fatal(err)
	}
	layer, err := ociimage.FilesLayer([]ociimage.File{
		{Path: "bin/busybox", Mode: 0o755, Data: data},
		{Path: "mnt", Mode: 0o755, Dir: true},
		{Path: "tmp", Mode: 0o1777, Dir: true},
	}, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	img, err := ociimage.Image([]v1.Layer{layer}, ociimage.Config{Env: []string{"PATH=/bin"}})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "busybox.tar")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := ociimage.WriteLayout(f, img, ref); err != nil {
		t.Fatal(err)
	}
	return out
}

// privilegedJob returns a Job running command in image, in a privileged
// container, never retried and never pulling its image.
func privilegedJob(name, image string, command ...string) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy:                corev1.RestartPolicyNever,
				AutomountServiceAccountToken: ptr.To(false),
				Containers: []corev1.Container{{
					Name:            "step",
					Image:           image,
					ImagePullPolicy: corev1.PullNever,
					Command:         command,
					SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)},
				}},
			}},
		},
	}
}

// TestKubernetesJob runs a privileged Job to completion in the cluster: in
// it, a process gets new mount and pid namespaces with its own /proc (as the
// customize sandbox and kiwi do), mounts a tmpfs and attaches a file on it to
// a loop device (as kiwi's disk images need).
func TestKubernetesJob(t *testing.T) {
	e := Cluster(t)
	const ref = "imsbuild.local/test-busybox:1"
	e.LoadImage(t, busyboxImage(t, ref))
	// Kubernetes expands $(VAR) and turns $$ into $ in a command: $$$$ is
	// the shell's $$.
	script := `set -e
busybox unshare -m -p -f --mount-proc busybox sh -c '
set -e
echo "pid in namespace: $$$$"
busybox mount -t tmpfs none /mnt
busybox dd if=/dev/zero of=/mnt/disk bs=1024 count=2048 2>/dev/null
dev=$(busybox losetup -f)
busybox losetup "$dev" /mnt/disk
busybox losetup "$dev" | busybox grep -q /mnt/disk
busybox losetup -d "$dev"
echo "loop device: ok"
'`
	job := privilegedJob("privileged", ref, "/bin/busybox", "sh", "-c", script)
	ctx := t.Context()
	if _, err := e.Client.BatchV1().Jobs(e.Namespace).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create job: %v", err)
	}
	logs, err := e.WaitJob(ctx, job.Name, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"pid in namespace: 1\n", "loop device: ok\n"} {
		if !strings.Contains(logs, want) {
			t.Errorf("job log lacks %q:\n%s", want, logs)
		}
	}
}

// TestKubernetesPodsStayOnNode: a pod on the cluster network has no route off
// the node (the CNI bridge has no gateway), so a test pod cannot send traffic
// off the machine; 203.0.113.1 is a documentation address, never routed.
func TestKubernetesPodsStayOnNode(t *testing.T) {
	e := Cluster(t)
	const ref = "imsbuild.local/test-busybox:1"
	e.LoadImage(t, busyboxImage(t, ref))
	script := `busybox ip route
if busybox ip route | busybox grep -q default; then echo "has a default route"; exit 1; fi
busybox ip route get 203.0.113.1 2>&1 && { echo "has a route off the node"; exit 1; }
echo "isolated"`
	job := privilegedJob("isolated", ref, "/bin/busybox", "sh", "-c", script)
	job.Spec.Template.Spec.Containers[0].SecurityContext = nil
	ctx := t.Context()
	if _, err := e.Client.BatchV1().Jobs(e.Namespace).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create job: %v", err)
	}
	logs, err := e.WaitJob(ctx, job.Name, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs, "isolated\n") || !strings.Contains(logs, "unreachable") {
		t.Errorf("job log = %q, want no route off the node (Network is unreachable)", logs)
	}
}
