package kubernetes

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/imsbuild/imsbuild/executor"
)

// SSH environments of interactive steps and debug shells (executor.SSHExecutor). The pod's
// run-step listens on the pod's address (SSHListenEnv from the downward
// API) at a port of its choosing and reports it on its log; the step's Run
// then makes a Service named like the Job, owned by it, selecting the
// Job's pods, whose port 22 leads to that port, and tells the engine the
// Service's address (Step.Waiting). The Service goes when the step ends,
// and with the Job (the garbage collector) if the orchestrator dies.

// SSHPort is the port of the step's Service, as IMS's is.
const SSHPort = 22

// podIPEnv holds the pod's address, from the downward API.
const podIPEnv = "IMSBUILD_POD_IP"

// ReachesSSH implements executor.SSHExecutor.
func (e *Executor) ReachesSSH() bool { return true }

// sshEnv is the environment that makes the step's SSH environment listen
// on the pod's address: after the step's own, since it refers to podIPEnv.
func sshEnv() []corev1.EnvVar {
	return []corev1.EnvVar{
		{Name: podIPEnv, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
		// Brackets: an IPv6 pod address, and an IPv4 one too.
		{Name: executor.SSHListenEnv, Value: "[$(" + podIPEnv + ")]:0"},
	}
}

// onMarker handles an SSH marker line of pod's log: it makes or updates
// the Service and calls Step.Waiting. It runs on the pod's log goroutine.
func (r *run) onMarker(ctx context.Context, pod string, ep executor.SSHEndpoint, err error) {
	if err != nil {
		_, _ = r.logs.write(fmt.Appendf(nil, "imsbuild: pod %s reported an unusable SSH environment: %v\n", pod, err))
		return
	}
	out, err := r.exposeSSH(ctx, pod, ep)
	if err != nil {
		_, _ = r.logs.write(fmt.Appendf(nil, "imsbuild: cannot let people into the SSH environment of pod %s: %v\n", pod, err))
		r.e.log.Warn("ssh service", "step", r.s.Step, "job", r.name, "err", err)
		return
	}
	r.s.Waiting(out)
}

// exposeSSH makes the Service for pod's environment ep and returns ep as
// people reach it: the Service's cluster address and port 22 (ClusterIP),
// the node's address and node port (NodePort), or the load balancer's
// address and port 22 (LoadBalancer, once it has one).
func (r *run) exposeSSH(ctx context.Context, pod string, ep executor.SSHEndpoint) (executor.SSHEndpoint, error) {
	// The Job of the pod, from the informer: the run loop owns r.uid.
	job, err := r.e.jobs.Get(r.name)
	if err != nil {
		return ep, fmt.Errorf("job %s: %w", r.name, err)
	}
	svc, err := r.applyService(ctx, job.UID, ep.Port)
	if err != nil {
		return ep, err
	}
	ns := r.e.cfg.Namespace
	ep.Service = ns + "/" + svc.Name
	ep.DNSName = fmt.Sprintf("%s.%s.svc.%s", svc.Name, ns, r.e.cfg.ClusterDomain)
	ep.Host, ep.Port = svc.Spec.ClusterIP, SSHPort
	switch svc.Spec.Type {
	case corev1.ServiceTypeNodePort:
		p, err := r.e.client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			return ep, fmt.Errorf("pod %s: %w", pod, err)
		}
		if p.Status.HostIP == "" || len(svc.Spec.Ports) == 0 || svc.Spec.Ports[0].NodePort == 0 {
			return ep, fmt.Errorf("service %s: no node address or node port", svc.Name)
		}
		ep.Host, ep.Port = p.Status.HostIP, int(svc.Spec.Ports[0].NodePort)
	case corev1.ServiceTypeLoadBalancer:
		host, err := r.waitIngress(ctx, svc)
		if err != nil {
			return ep, err
		}
		ep.Host = host
	}
	return ep, nil
}

// applyService creates the step's Service leading to port. A Service of
// the Job there already (a retried pod's environment, at another port) is
// made again rather than updated: the Role grants services create, get
// and delete only.
func (r *run) applyService(ctx context.Context, job types.UID, port int) (*corev1.Service, error) {
	services := r.e.client.CoreV1().Services(r.e.cfg.Namespace)
	want := r.service(job, port)
	for attempt := 0; attempt < 3; attempt++ {
		svc, err := services.Create(ctx, want, metav1.CreateOptions{})
		if err == nil {
			r.mu.Lock()
			r.serviceUID = svc.UID
			r.mu.Unlock()
			return svc, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create service %s: %w", want.Name, err)
		}
		old, err := services.Get(ctx, want.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("get service %s: %w", want.Name, err)
		}
		if !slices.ContainsFunc(old.OwnerReferences, func(o metav1.OwnerReference) bool { return o.UID == job }) {
			return nil, fmt.Errorf("service %s exists and is not this step's Job's", want.Name)
		}
		if len(old.Spec.Ports) == 1 && old.Spec.Ports[0].TargetPort.IntValue() == port {
			r.mu.Lock()
			r.serviceUID = old.UID
			r.mu.Unlock()
			return old, nil
		}
		err = services.Delete(ctx, want.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &old.UID}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return nil, fmt.Errorf("delete stale service %s: %w", want.Name, err)
		}
	}
	return nil, fmt.Errorf("service %s: replaced too often while creating it", want.Name)
}

// service is the step's Service: named like its Job (as IMS names the
// job's), owned by it, selecting its pods.
func (r *run) service(job types.UID, port int) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name:        r.name,
			Namespace:   r.e.cfg.Namespace,
			Labels:      r.labels(),
			Annotations: map[string]string{AnnotationKey: r.s.Key, AnnotationStep: r.s.Step},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "batch/v1", Kind: "Job", Name: r.name, UID: job,
			}},
		},
		Spec: corev1.ServiceSpec{
			Type:     r.e.cfg.SSHServiceType,
			Selector: map[string]string{LabelJob: r.name},
			Ports: []corev1.ServicePort{{
				Name: "ssh", Protocol: corev1.ProtocolTCP, Port: SSHPort, TargetPort: intstr.FromInt32(int32(port)),
			}},
		},
	}
}

// waitIngress waits, bounded by SSHServiceWait, for the load balancer's
// address of svc. It asks every two seconds: the Role grants no watch on
// services, and a load balancer takes seconds to minutes.
func (r *run) waitIngress(ctx context.Context, svc *corev1.Service) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.e.cfg.SSHServiceWait)
	defer cancel()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		if h := ingress(svc); h != "" {
			return h, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("service %s: no load balancer address after %s", svc.Name, r.e.cfg.SSHServiceWait)
		case <-t.C:
		}
		now, err := r.e.client.CoreV1().Services(svc.Namespace).Get(ctx, svc.Name, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("get service %s: %w", svc.Name, err)
		}
		svc = now
	}
}

func ingress(svc *corev1.Service) string {
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if in.IP != "" {
			return in.IP
		}
		if in.Hostname != "" {
			return in.Hostname
		}
	}
	return ""
}

// deleteService deletes the Service this Run made, if any, with its own
// short timeout (the step's context may be cancelled).
func (r *run) deleteService(ctx context.Context) {
	r.mu.Lock()
	uid := r.serviceUID
	r.mu.Unlock()
	if uid == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	err := r.e.client.CoreV1().Services(r.e.cfg.Namespace).Delete(ctx, r.name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		r.e.log.Warn("delete ssh service", "step", r.s.Step, "service", r.name, "err", err)
	}
}
