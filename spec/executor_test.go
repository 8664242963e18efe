package spec

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2"
)

func TestExecutorSettings(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"build.ims.hcl": `
imsbuild {
  executor "kubernetes" {
    kubeconfig         = "kube/config"
    context            = "mgmt"
    namespace          = "imsbuild"
    image              = "registry.example/imsbuild-builder:0.1"
    service_account    = "builder"
    node_selector      = { "node-role.kubernetes.io/worker" = "" }
    tolerations        = [{ key = "builders", operator = "Exists", effect = "NoSchedule" }, { key = "a", value = "b", toleration_seconds = 30 }]
    resources          = { requests = { cpu = "500m", memory = "4Gi" }, limits = { memory = "8Gi" } }
    parallelism        = 16
    ttl_after_finished = "24h"
    image_pull_policy  = "Never"
    backoff_limit      = 0
    host_network       = true
    ssh_service_type   = "LoadBalancer"
  }
}
`})
	cfg, diags := Load(dir, Options{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	zero, thirty := 0, int64(30)
	want := ExecutorSettings{
		Kind: "kubernetes", Kubeconfig: filepath.Join(dir, "kube/config"), Context: "mgmt", Namespace: "imsbuild",
		Image: "registry.example/imsbuild-builder:0.1", ServiceAccount: "builder",
		NodeSelector: map[string]string{"node-role.kubernetes.io/worker": ""},
		Tolerations: []Toleration{
			{Key: "builders", Operator: "Exists", Effect: "NoSchedule"},
			{Key: "a", Value: "b", Seconds: &thirty},
		},
		Requests:    map[string]string{"cpu": "500m", "memory": "4Gi"},
		Limits:      map[string]string{"memory": "8Gi"},
		Parallelism: 16, TTLAfterFinished: 24 * time.Hour, ImagePullPolicy: "Never", BackoffLimit: &zero, HostNetwork: true,
		SSHServiceType: "LoadBalancer",
	}
	if diff := cmp.Diff(want, cfg.Settings.Executor, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".DeclRange" }, cmp.Ignore())); diff != "" {
		t.Errorf("Executor settings (-want +got):\n%s", diff)
	}
	if cfg.Settings.Executor.DeclRange == (hcl.Range{}) {
		t.Error("no DeclRange")
	}
}
