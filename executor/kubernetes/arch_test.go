package kubernetes

import (
	"bytes"
	"errors"
	"log/slog"
	"maps"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	k8stesting "k8s.io/client-go/testing"

	"github.com/imsbuild/imsbuild/internal/testutil"
)

// testNode is a node of the fake cluster.
type testNode struct {
	name, arch string // arch: the kubernetes.io/arch label
	infoArch   string // the kubelet's NodeInfo.Architecture
	labels     map[string]string
	taints     []corev1.Taint
	cordoned   bool
}

func addNodes(t *testing.T, cs *fake.Clientset, nodes ...testNode) {
	t.Helper()
	for _, n := range nodes {
		l := maps.Clone(n.labels)
		if n.arch != "" {
			if l == nil {
				l = map[string]string{}
			}
			l[corev1.LabelArchStable] = n.arch
		}
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: l},
			Spec:       corev1.NodeSpec{Taints: n.taints, Unschedulable: n.cordoned},
			Status:     corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{Architecture: n.infoArch}},
		}
		if _, err := cs.CoreV1().Nodes().Create(t.Context(), node, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

var (
	amd64Node = testNode{name: "x1", arch: "amd64"}
	arm64Node = testNode{name: "a1", arch: "arm64"}
	armTaint  = corev1.Taint{Key: "arch", Value: "arm64", Effect: corev1.TaintEffectNoSchedule}
)

// TestRoute: where a step pod of each arch goes (its kubernetes.io/arch)
// and whether the step runs natively there, by the cluster's nodes and
// the configured node selector and tolerations.
func TestRoute(t *testing.T) {
	for _, tc := range []struct {
		name        string
		nodes       []testNode
		cfg         func(*Config)
		arm, x86    string // kubernetes.io/arch of an aarch64 and an x86_64 step
		armNative   bool
		x86Emulated bool
		lists       int // node lists, whichever arch and however often asked
	}{
		{name: "no nodes", arm: "amd64", x86: "amd64", lists: 1},
		{name: "amd64 only", nodes: []testNode{amd64Node, {name: "x2", arch: "amd64"}}, arm: "amd64", x86: "amd64", lists: 1},
		{name: "arm64 present", nodes: []testNode{amd64Node, arm64Node}, arm: "arm64", armNative: true, x86: "amd64", lists: 1},
		{name: "arm64 tainted, not tolerated", nodes: []testNode{amd64Node, {name: "a1", arch: "arm64", taints: []corev1.Taint{armTaint}}},
			cfg: func(c *Config) {
				c.Tolerations = []corev1.Toleration{{Key: "arch", Operator: corev1.TolerationOpEqual, Value: "arm64", Effect: corev1.TaintEffectNoExecute}}
			},
			arm: "amd64", x86: "amd64", lists: 1},
		{name: "arm64 tainted, tolerated", nodes: []testNode{amd64Node, {name: "a1", arch: "arm64", taints: []corev1.Taint{armTaint}}},
			cfg: func(c *Config) {
				c.Tolerations = []corev1.Toleration{{Key: "arch", Operator: corev1.TolerationOpEqual, Value: "arm64", Effect: corev1.TaintEffectNoSchedule}}
			},
			arm: "arm64", armNative: true, x86: "amd64", lists: 1},
		{name: "arm64 tainted NoExecute, tolerated by Exists", nodes: []testNode{{name: "a1", arch: "arm64",
			taints: []corev1.Taint{{Key: "dedicated", Value: "ci", Effect: corev1.TaintEffectNoExecute}}}},
			cfg: func(c *Config) {
				c.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpExists}}
			},
			arm: "arm64", armNative: true, x86: "amd64", lists: 1},
		{name: "arm64 tainted PreferNoSchedule", nodes: []testNode{{name: "a1", arch: "arm64",
			taints: []corev1.Taint{{Key: "arch", Value: "arm64", Effect: corev1.TaintEffectPreferNoSchedule}}}},
			arm: "arm64", armNative: true, x86: "amd64", lists: 1},
		{name: "arm64 cordoned", nodes: []testNode{amd64Node, {name: "a1", arch: "arm64", cordoned: true}}, arm: "amd64", x86: "amd64", lists: 1},
		{name: "node_selector excludes arm64", nodes: []testNode{{name: "x1", arch: "amd64", labels: map[string]string{"pool": "build"}}, arm64Node},
			cfg: func(c *Config) { c.NodeSelector = map[string]string{"pool": "build"} },
			arm: "amd64", x86: "amd64", lists: 1},
		{name: "node_selector includes arm64", nodes: []testNode{amd64Node, {name: "a1", arch: "arm64", labels: map[string]string{"pool": "build"}}},
			cfg: func(c *Config) { c.NodeSelector = map[string]string{"pool": "build"} },
			arm: "arm64", armNative: true, x86: "amd64", lists: 1},
		{name: "explicit arm64", nodes: []testNode{amd64Node},
			cfg: func(c *Config) { c.NodeSelector = map[string]string{corev1.LabelArchStable: "arm64"} },
			arm: "arm64", armNative: true, x86: "arm64", x86Emulated: true, lists: 0},
		{name: "explicit amd64", nodes: []testNode{amd64Node, arm64Node},
			cfg: func(c *Config) { c.NodeSelector = map[string]string{corev1.LabelArchStable: "amd64"} },
			arm: "amd64", x86: "amd64", lists: 0},
		{name: "arch from node info", nodes: []testNode{amd64Node, {name: "a1", infoArch: "arm64"}}, arm: "arm64", armNative: true, x86: "amd64", lists: 1},
		{name: "label over node info", nodes: []testNode{{name: "a1", arch: "amd64", infoArch: "arm64"}}, arm: "amd64", x86: "amd64", lists: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := newFake(t)
			addNodes(t, cs, tc.nodes...)
			e := newExecutor(t, cs, tc.cfg)
			for range 2 { // the second time from what the first listed
				for _, a := range []struct {
					arch, want string
					native     bool
				}{{"aarch64", tc.arm, tc.armNative}, {"x86_64", tc.x86, !tc.x86Emulated}} {
					to, native, err := e.route(t.Context(), a.arch)
					if err != nil || to != a.want || native != a.native {
						t.Errorf("route(%s) = %q, %v, %v; want %q, %v", a.arch, to, native, err, a.want, a.native)
					}
					if n, err := e.Native(t.Context(), a.arch); err != nil || n != a.native {
						t.Errorf("Native(%s) = %v, %v; want %v", a.arch, n, err, a.native)
					}
				}
			}
			if n := countVerb(cs, "list", "nodes"); n != tc.lists {
				t.Errorf("nodes listed %d times, want %d", n, tc.lists)
			}
		})
	}
}

func TestRouteUnknownArch(t *testing.T) {
	e := newExecutor(t, newFake(t), nil)
	if _, err := e.Native(t.Context(), "riscv64"); err == nil || !strings.Contains(err.Error(), `"riscv64"`) {
		t.Errorf("Native(riscv64) = %v, want an error naming it", err)
	}
}

// Without the right to list nodes the executor warns once and emulates
// aarch64 steps on amd64 nodes; the build goes on.
func TestRouteNodesForbidden(t *testing.T) {
	cs := newFake(t)
	addNodes(t, cs, arm64Node)
	cs.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "", errors.New(`User "system:serviceaccount:builds:imsbuild" cannot list resource "nodes"`))
	})
	var logs testutil.SyncBuffer
	e := newExecutor(t, cs, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	for range 3 {
		if native, err := e.Native(t.Context(), "aarch64"); err != nil || native {
			t.Fatalf("Native(aarch64) = %v, %v; want false, nil (emulated)", native, err)
		}
	}
	sel, _, err := e.nodeSelector(t.Context(), "aarch64")
	if err != nil || sel[corev1.LabelArchStable] != "amd64" {
		t.Errorf("nodeSelector(aarch64) = %v, %v; want kubernetes.io/arch amd64", sel, err)
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 || !strings.Contains(logs.String(), "rbac-nodes.yaml") {
		t.Errorf("log = %q, want one warning naming rbac-nodes.yaml", logs.String())
	}
	if n := countVerb(cs, "list", "nodes"); n != 1 {
		t.Errorf("nodes listed %d times, want once", n)
	}
}

// Another list error fails the step's key, is not remembered, and the next
// call lists again.
func TestRouteListError(t *testing.T) {
	cs := newFake(t)
	addNodes(t, cs, arm64Node)
	failed := false
	cs.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		if !failed {
			failed = true
			return true, nil, errors.New("connection refused")
		}
		return false, nil, nil
	})
	e := newExecutor(t, cs, nil)
	if _, err := e.Native(t.Context(), "aarch64"); err == nil || !strings.Contains(err.Error(), "list nodes: connection refused") {
		t.Fatalf("Native(aarch64) = %v, want the list error", err)
	}
	if native, err := e.Native(t.Context(), "aarch64"); err != nil || !native {
		t.Errorf("Native(aarch64) after the error = %v, %v; want true (listed again)", native, err)
	}
}

// Run gives the step's pod the node selector of its arch, beside the
// configured one, which stays as configured; a step without an arch gets
// the configured one alone.
func TestRunNodeSelector(t *testing.T) {
	for _, tc := range []struct {
		arch string
		want map[string]string
	}{
		{"", map[string]string{"role": "builder"}},
		{"x86_64", map[string]string{"role": "builder", corev1.LabelArchStable: "amd64"}},
		{"aarch64", map[string]string{"role": "builder", corev1.LabelArchStable: "arm64"}},
	} {
		t.Run("arch "+tc.arch, func(t *testing.T) {
			cs := newFake(t)
			addNodes(t, cs, testNode{name: "a1", arch: "arm64", labels: map[string]string{"role": "builder"}})
			e := newExecutor(t, cs, func(c *Config) { c.NodeSelector = map[string]string{"role": "builder"} })
			var log bytes.Buffer
			s := testStep(&log)
			s.Arch = tc.arch
			done := runAsync(t.Context(), e, s)
			job := getJob(t, cs, "imsbuild-0123456789abcdef0123")
			if got := job.Spec.Template.Spec.NodeSelector; !maps.Equal(got, tc.want) {
				t.Errorf("pod nodeSelector = %v, want %v", got, tc.want)
			}
			setCondition(t, cs, job, "Complete", "", "")
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Run() = %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run() still waiting after its Job completed")
			}
			if want := map[string]string{"role": "builder"}; !maps.Equal(e.cfg.NodeSelector, want) {
				t.Errorf("configured node selector = %v after Run, want %v", e.cfg.NodeSelector, want)
			}
		})
	}
}

// A step whose arch cannot be routed fails before any Job is created.
func TestRunRouteError(t *testing.T) {
	cs := newFake(t)
	cs.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("connection refused")
	})
	e := newExecutor(t, cs, nil)
	var log bytes.Buffer
	s := testStep(&log)
	s.Arch = "aarch64"
	if err := e.Run(t.Context(), s); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Run() = %v, want the list error", err)
	}
	if n := countVerb(cs, "create", "jobs"); n != 0 {
		t.Errorf("%d Jobs created, want none", n)
	}
}

// deploy/kubernetes/rbac-nodes.yaml grants what routing needs, list nodes
// cluster-wide, to the service account of rbac.yaml, and nothing else.
func TestRBACNodes(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/kubernetes/rbac-nodes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var role *rbacv1.ClusterRole
	var binding *rbacv1.ClusterRoleBinding
	for _, doc := range bytes.Split(raw, []byte("\n---\n")) {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("rbac-nodes.yaml: %v", err)
		}
		switch o := obj.(type) {
		case *rbacv1.ClusterRole:
			role = o
		case *rbacv1.ClusterRoleBinding:
			binding = o
		default:
			t.Fatalf("rbac-nodes.yaml: unexpected %T", obj)
		}
	}
	if role == nil || binding == nil {
		t.Fatalf("rbac-nodes.yaml has ClusterRole %v and ClusterRoleBinding %v, want both", role, binding)
	}
	want := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"list"}}}
	if len(role.Rules) != 1 || !equalRule(role.Rules[0], want[0]) {
		t.Errorf("ClusterRole rules = %+v, want %+v", role.Rules, want)
	}
	if binding.RoleRef.Kind != "ClusterRole" || binding.RoleRef.Name != role.Name ||
		len(binding.Subjects) != 1 || binding.Subjects[0].Kind != "ServiceAccount" ||
		binding.Subjects[0].Name != "imsbuild" || binding.Subjects[0].Namespace != "imsbuild" {
		t.Errorf("ClusterRoleBinding = %+v, want ClusterRole %s bound to service account imsbuild/imsbuild", binding, role.Name)
	}
}

func equalRule(a, b rbacv1.PolicyRule) bool {
	eq := func(x, y []string) bool { return strings.Join(x, ",") == strings.Join(y, ",") }
	return eq(a.APIGroups, b.APIGroups) && eq(a.Resources, b.Resources) && eq(a.Verbs, b.Verbs) &&
		len(a.ResourceNames) == 0 && len(a.NonResourceURLs) == 0
}
