package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/imsbuild/imsbuild/spec"
)

// TestKubernetesExecutorUsage: what a user gets wrong with --executor
// kubernetes is a clear error and exit 2, before anything is built.
func TestKubernetesExecutorUsage(t *testing.T) {
	const block = `
imsbuild {
  executor "kubernetes" {
    image = "builder:1"
  }
}
`
	for _, tc := range []struct {
		name, build string
		args        []string
		want        string
	}{
		{"no remote cache", "", []string{"--executor", "kubernetes"}, "needs a remote cache"},
		{"no image", "", []string{"--executor", "kubernetes", "--cache-to", "s3://b/p?endpoint=http://127.0.0.1:1"}, "needs the builder image"},
		{"block without remote cache", block, nil, "kubernetes executor builds steps elsewhere and needs a remote cache"},
		{"bad kubeconfig", block, []string{"--cache-to", "s3://b/p?endpoint=http://127.0.0.1:1", "--kubeconfig", "/nonexistent/kubeconfig"}, "kubeconfig: stat /nonexistent/kubeconfig"},
		{"unknown executor", "", []string{"--executor", "slurm"}, `--executor "slurm": want local, kubernetes or none`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "build.ims.hcl"), []byte(`
image "base" {
  import = "oci://registry.example/base:1"
}
`+tc.build), 0o644); err != nil {
				t.Fatal(err)
			}
			r := imsbuild(t, dir, append(append([]string{"build"}, tc.args...), ".")...)
			if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", r.code, r.stderr, tc.want)
			}
		})
	}
}

func TestKubernetesConfig(t *testing.T) {
	two, ten := 2, int64(10)
	cfg, err := kubernetesConfig(spec.ExecutorSettings{
		Kind: "kubernetes", Namespace: "ns", Image: "img", ServiceAccount: "sa", ImagePullPolicy: "Never",
		Tolerations:  []spec.Toleration{{Key: "k", Operator: "Exists", Effect: "NoExecute", Seconds: &ten}},
		Requests:     map[string]string{"cpu": "500m"},
		Limits:       map[string]string{"memory": "4Gi"},
		BackoffLimit: &two, Parallelism: 3, TTLAfterFinished: time.Minute, HostNetwork: true, SSHServiceType: "NodePort",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Namespace != "ns" || cfg.Image != "img" || cfg.ServiceAccount != "sa" || cfg.ImagePullPolicy != corev1.PullNever ||
		*cfg.BackoffLimit != 2 || cfg.Parallelism != 3 || cfg.TTLAfterFinished != time.Minute || !cfg.HostNetwork ||
		cfg.SSHServiceType != corev1.ServiceTypeNodePort {
		t.Errorf("config = %+v", cfg)
	}
	if tl := cfg.Tolerations; len(tl) != 1 || tl[0].Effect != corev1.TaintEffectNoExecute || *tl[0].TolerationSeconds != 10 {
		t.Errorf("tolerations = %+v", tl)
	}
	if q := cfg.Resources.Requests[corev1.ResourceCPU]; q.Cmp(resource.MustParse("0.5")) != 0 {
		t.Errorf("cpu request = %s, want 500m", q.String())
	}
	if q := cfg.Resources.Limits[corev1.ResourceMemory]; q.Value() != 4<<30 {
		t.Errorf("memory limit = %s, want 4Gi", q.String())
	}
}
