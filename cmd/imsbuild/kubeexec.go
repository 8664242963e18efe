package main

import (
	"errors"
	"fmt"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/imsbuild/imsbuild/executor"
	"github.com/imsbuild/imsbuild/executor/kubernetes"
	"github.com/imsbuild/imsbuild/spec"
)

// kubeFlags are build's flags over the imsbuild.executor block.
type kubeFlags struct {
	kubeconfig, namespace string
}

// executorName is the executor a build uses: --executor, else the kind of
// the build's executor block, else none ("": steps build in this process).
func executorName(flag string, cfg *spec.Config) (string, error) {
	switch flag {
	case "none":
		return "", nil
	case "":
		return cfg.Settings.Executor.Kind, nil
	case "local", "kubernetes":
		return flag, nil
	}
	return "", usageError{fmt.Errorf("--executor %q: want local, kubernetes or none", flag)}
}

// newKubernetesExecutor makes the Kubernetes executor from the build's
// executor block and the flags.
func newKubernetesExecutor(es spec.ExecutorSettings, f kubeFlags) (executor.Executor, error) {
	if es.Image == "" {
		return nil, usageError{errors.New(`the kubernetes executor needs the builder image: set imsbuild { executor "kubernetes" { image = "registry.example/imsbuild-builder:…" } } (make builder-image builds one)`)}
	}
	cfg, err := kubernetesConfig(es)
	if err != nil {
		return nil, usageError{err}
	}
	if f.namespace != "" {
		cfg.Namespace = f.namespace
	}
	kubeconfig := es.Kubeconfig
	if f.kubeconfig != "" {
		kubeconfig = f.kubeconfig
	}
	client, err := kubernetes.Client(kubeconfig, es.Context)
	if err != nil {
		return nil, usageError{err}
	}
	return kubernetes.New(client, cfg)
}

// kubernetesConfig turns the executor block into the executor's Config.
func kubernetesConfig(es spec.ExecutorSettings) (kubernetes.Config, error) {
	cfg := kubernetes.Config{
		Namespace:        es.Namespace,
		Image:            es.Image,
		ServiceAccount:   es.ServiceAccount,
		NodeSelector:     es.NodeSelector,
		ImagePullPolicy:  corev1.PullPolicy(es.ImagePullPolicy),
		HostNetwork:      es.HostNetwork,
		SSHServiceType:   corev1.ServiceType(es.SSHServiceType),
		Parallelism:      es.Parallelism,
		TTLAfterFinished: es.TTLAfterFinished,
		Logger:           slog.Default(),
	}
	if es.BackoffLimit != nil {
		n := int32(*es.BackoffLimit)
		cfg.BackoffLimit = &n
	}
	for _, t := range es.Tolerations {
		cfg.Tolerations = append(cfg.Tolerations, corev1.Toleration{
			Key: t.Key, Operator: corev1.TolerationOperator(t.Operator), Value: t.Value,
			Effect: corev1.TaintEffect(t.Effect), TolerationSeconds: t.Seconds,
		})
	}
	var err error
	if cfg.Resources.Requests, err = resourceList("requests", es.Requests); err != nil {
		return cfg, err
	}
	if cfg.Resources.Limits, err = resourceList("limits", es.Limits); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func resourceList(kind string, m map[string]string) (corev1.ResourceList, error) {
	if len(m) == 0 {
		return nil, nil
	}
	l := corev1.ResourceList{}
	for k, v := range m {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return nil, fmt.Errorf("executor resources %s.%s = %q: %w", kind, k, v, err)
		}
		l[corev1.ResourceName(k)] = q
	}
	return l, nil
}
