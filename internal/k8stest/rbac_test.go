//go:build kubernetes

package k8stest

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
)

// applyRBAC creates the objects of deploy/kubernetes/rbac.yaml in the
// test's namespace instead of "imsbuild".
func applyRBAC(t *testing.T, e *Env) {
	t.Helper()
	raw, err := os.ReadFile("../../deploy/kubernetes/rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, doc := range bytes.Split(raw, []byte("\n---\n")) {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("rbac.yaml: %v", err)
		}
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			o.Namespace = e.Namespace
			_, err = e.Client.CoreV1().ServiceAccounts(e.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.Role:
			o.Namespace = e.Namespace
			_, err = e.Client.RbacV1().Roles(e.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			o.Namespace = e.Namespace
			for i := range o.Subjects {
				o.Subjects[i].Namespace = e.Namespace
			}
			_, err = e.Client.RbacV1().RoleBindings(e.Namespace).Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("rbac.yaml: unexpected %T", obj)
		}
		if err != nil {
			t.Fatalf("create %T: %v", obj, err)
		}
	}
}

// TestKubernetesRBAC applies the Role the README tells users to apply and
// checks, as its service account, that it allows what the executor does and
// no more than that namespace's Jobs, pods, logs, secrets and services.
func TestKubernetesRBAC(t *testing.T) {
	e := Cluster(t)
	applyRBAC(t, e)
	cfg := rest.CopyConfig(e.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + e.Namespace + ":imsbuild"}
	as, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	type access struct {
		group, resource, sub, verb string
		namespace                  string // "" = the test's
	}
	allowed := []access{}
	for _, v := range []string{"create", "get", "list", "watch", "delete"} {
		allowed = append(allowed, access{group: "batch", resource: "jobs", verb: v})
	}
	for _, v := range []string{"get", "list", "watch"} {
		allowed = append(allowed, access{resource: "pods", verb: v})
	}
	allowed = append(allowed, access{resource: "pods", sub: "log", verb: "get"})
	for _, r := range []string{"secrets", "services"} {
		for _, v := range []string{"create", "get", "delete"} {
			allowed = append(allowed, access{resource: r, verb: v})
		}
	}
	// The executor makes a step's Job the owner of its Secret.
	allowed = append(allowed, access{resource: "secrets", verb: "update"})
	denied := []access{
		{resource: "pods", verb: "create"}, // pods only through Jobs
		{resource: "pods", sub: "exec", verb: "create"},
		{resource: "secrets", verb: "list"}, // no reading of other secrets
		{resource: "services", verb: "update"},
		{resource: "jobs", group: "batch", verb: "create", namespace: "default"},
		{group: "rbac.authorization.k8s.io", resource: "roles", verb: "create"},
		{resource: "nodes", verb: "get"},
	}
	check := func(ctx context.Context, a access) (bool, error) {
		ns := a.namespace
		if ns == "" {
			ns = e.Namespace
		}
		r, err := as.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Group: a.group, Resource: a.resource, Subresource: a.sub, Verb: a.verb,
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		return r.Status.Allowed, nil
	}
	ctx := t.Context()
	// The authorizer learns of new bindings through its informers: wait
	// until the first grant shows before judging the rest.
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		return check(ctx, allowed[0])
	})
	if err != nil {
		t.Fatalf("the service account never got %+v: %v", allowed[0], err)
	}
	for _, a := range allowed {
		if ok, err := check(ctx, a); err != nil || !ok {
			t.Errorf("%+v: allowed = %v (%v), want true", a, ok, err)
		}
	}
	for _, a := range denied {
		if ok, err := check(ctx, a); err != nil || ok {
			t.Errorf("%+v: allowed = %v (%v), want false", a, ok, err)
		}
	}
	// And for real: the service account lists pods and creates a secret.
	if _, err := as.CoreV1().Pods(e.Namespace).List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("list pods as the service account: %v", err)
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "step-env"}, StringData: map[string]string{"K": "v"}}
	if _, err := as.CoreV1().Secrets(e.Namespace).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Errorf("create secret as the service account: %v", err)
	}
}
