package kubernetes

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/imsbuild/imsbuild/executor"
)

// Architectures. Every step pod of an arch gets the node selector
// kubernetes.io/arch: amd64 for x86_64; arm64 for aarch64 when the cluster
// has an arm64 node the pod can land on, where the step runs natively;
// else amd64, where imsbuild runs the step's programs under qemu user-mode
// emulation in the pod. A kubernetes.io/arch in Config.NodeSelector wins:
// every pod goes there, and a step of another arch is emulated.
//
// The nodes are listed once per Executor, on the first aarch64 step, so
// that the engine keys a step (Native: an emulated step's key names the
// emulator) for the node it then runs on. Listing nodes needs a
// ClusterRole (deploy/kubernetes/rbac-nodes.yaml); without it the Executor
// warns once and emulates aarch64 steps on amd64 nodes.

// nodeArch is the kubernetes.io/arch value (GOARCH) of an IMS arch.
var nodeArch = map[string]string{"x86_64": "amd64", "aarch64": "arm64"}

var _ executor.ArchRouter = (*Executor)(nil)

// nodes is what the Executor knows of the cluster's nodes.
type nodes struct {
	mu     sync.Mutex
	listed bool
	arches map[string]bool // of the nodes a step pod can be scheduled on
}

// Native reports whether a step of arch runs natively on the node its pod
// is sent to (executor.ArchRouter).
func (e *Executor) Native(ctx context.Context, arch string) (bool, error) {
	_, native, err := e.route(ctx, arch)
	return native, err
}

// route returns the kubernetes.io/arch of the nodes a step of arch runs
// on, and whether it runs natively there.
func (e *Executor) route(ctx context.Context, arch string) (string, bool, error) {
	want, ok := nodeArch[arch]
	if !ok {
		return "", false, fmt.Errorf("architecture %q: want x86_64 or aarch64", arch)
	}
	if pinned, ok := e.cfg.NodeSelector[corev1.LabelArchStable]; ok {
		return pinned, pinned == want, nil
	}
	if want == "amd64" {
		return want, true, nil
	}
	arches, err := e.nodeArches(ctx)
	if err != nil {
		return "", false, err
	}
	if arches[want] {
		return want, true, nil
	}
	return "amd64", false, nil
}

// nodeSelector is the node selector of a step pod of arch: the
// configured one with the arch's kubernetes.io/arch (route); the
// configured one alone when arch is "". emulated says the pod runs the
// arch's programs under qemu (route found no node of it).
func (e *Executor) nodeSelector(ctx context.Context, arch string) (sel map[string]string, emulated bool, err error) {
	if arch == "" {
		return e.cfg.NodeSelector, false, nil
	}
	to, native, err := e.route(ctx, arch)
	if err != nil {
		return nil, false, err
	}
	sel = maps.Clone(e.cfg.NodeSelector)
	if sel == nil {
		sel = map[string]string{}
	}
	sel[corev1.LabelArchStable] = to
	return sel, !native, nil
}

// nodeArches returns the architectures of the nodes a step pod can be
// scheduled on: matching the node selector, schedulable (not cordoned),
// every NoSchedule and NoExecute taint tolerated. The first list is kept
// for the Executor's life, so a step is keyed and run for the same node.
// Listing forbidden (no ClusterRole) is no node of any arch, after one
// warning; another error is returned and the next call lists again.
func (e *Executor) nodeArches(ctx context.Context) (map[string]bool, error) {
	n := &e.nodes
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.listed {
		return n.arches, nil
	}
	list, err := e.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(e.cfg.NodeSelector).String(),
	})
	switch {
	case apierrors.IsForbidden(err):
		e.log.Warn("cannot list the cluster's nodes, so aarch64 steps run emulated on amd64 nodes; to run them on arm64 nodes, grant list nodes (deploy/kubernetes/rbac-nodes.yaml)", "err", err)
		n.listed, n.arches = true, map[string]bool{}
		return n.arches, nil
	case err != nil:
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	arches := map[string]bool{}
	for i := range list.Items {
		node := &list.Items[i]
		if a := archOf(node); a != "" && e.schedulable(node) {
			arches[a] = true
		}
	}
	e.log.Info("architectures of the nodes step pods can run on", "arches", slices.Sorted(maps.Keys(arches)))
	n.listed, n.arches = true, arches
	return arches, nil
}

// archOf is node's kubernetes.io/arch label, else the architecture its
// kubelet reports.
func archOf(node *corev1.Node) string {
	if a := node.Labels[corev1.LabelArchStable]; a != "" {
		return a
	}
	return node.Status.NodeInfo.Architecture
}

// schedulable reports whether a step pod can be scheduled on node: it is
// not cordoned, and the configured tolerations tolerate each of its
// taints that keeps pods off (PreferNoSchedule only prefers).
func (e *Executor) schedulable(node *corev1.Node) bool {
	if node.Spec.Unschedulable {
		return false
	}
	for i := range node.Spec.Taints {
		t := &node.Spec.Taints[i]
		if t.Effect == corev1.TaintEffectPreferNoSchedule {
			continue
		}
		if !slices.ContainsFunc(e.cfg.Tolerations, func(tol corev1.Toleration) bool { return tol.ToleratesTaint(t) }) {
			return false
		}
	}
	return true
}
