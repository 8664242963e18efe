package kubernetes

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/imsbuild/imsbuild/executor"
)

var podEndpoint = executor.SSHEndpoint{Host: "10.213.0.7", Port: 40123, User: "root", HostKey: "SHA256:abc",
	Jail: true, ImageRoot: "/", CompleteFile: "/tmp/complete", FailedFile: "/tmp/failed"}

// sshFake is newFake whose Services get a cluster address and, for
// NodePort, a node port, as the API server gives them.
func sshFake(t *testing.T) *fake.Clientset {
	cs := newFake(t)
	cs.PrependReactor("create", "services", func(a k8stesting.Action) (bool, runtime.Object, error) {
		svc := a.(k8stesting.CreateAction).GetObject().(*corev1.Service)
		svc.Spec.ClusterIP = "10.96.0.9"
		if svc.Spec.Type == corev1.ServiceTypeNodePort {
			svc.Spec.Ports[0].NodePort = 30022
		}
		if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
			// The load balancer's address comes a little later.
			name := svc.Name
			go func() {
				time.Sleep(100 * time.Millisecond)
				s, err := cs.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
				if err != nil {
					return
				}
				s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.4"}}
				_, _ = cs.CoreV1().Services(ns).UpdateStatus(context.Background(), s, metav1.UpdateOptions{})
			}()
		}
		return false, nil, nil
	})
	return cs
}

// sshStep is testStep for an interactive step whose pod logs podLog; its
// Waiting calls come out of the channel.
func sshStep(e *Executor, log *bytes.Buffer, podLog string) (executor.Step, <-chan executor.SSHEndpoint) {
	e.logStream = func(context.Context, string) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(podLog)), nil
	}
	c := make(chan executor.SSHEndpoint, 4)
	s := testStep(log)
	s.Waiting = func(ep executor.SSHEndpoint) { c <- ep }
	return s, c
}

func service(t *testing.T, cs *fake.Clientset, name string) (*corev1.Service, error) {
	t.Helper()
	return cs.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
}

// TestRunSSH: an interactive step's pod listens on its address (downward
// API); its marker line makes a ClusterIP Service named like the Job,
// owned by it, selecting its pods, port 22 to the reported port; Waiting
// gets the Service's address and names; the marker never reaches the log;
// the Service goes when the step ends.
func TestRunSSH(t *testing.T) {
	cs := sshFake(t)
	e := newExecutor(t, cs, nil)
	var log bytes.Buffer
	s, waiting := sshStep(e, &log, "before\n"+executor.FormatSSHMarker(podEndpoint)+"after\n")
	done := runAsync(t.Context(), e, s)
	job := getJob(t, cs, "imsbuild-0123456789abcdef0123")
	env := job.Spec.Template.Spec.Containers[0].Env
	if n := len(env); n != 4 || env[2].Name != podIPEnv || env[2].ValueFrom == nil || env[2].ValueFrom.FieldRef.FieldPath != "status.podIP" ||
		env[3].Name != executor.SSHListenEnv || env[3].Value != "[$("+podIPEnv+")]:0" {
		t.Errorf("env = %+v, want the step's, then the pod's address and the listen address from it", env)
	}
	addPod(t, cs, job, "pod-1", running)
	ep := <-waiting
	name := job.Name
	want := podEndpoint
	want.Host, want.Port = "10.96.0.9", 22
	want.Service, want.DNSName = ns+"/"+name, name+"."+ns+".svc.cluster.local"
	if ep != want {
		t.Errorf("Waiting(%+v), want %+v", ep, want)
	}
	svc, err := service(t, cs, name)
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Type != corev1.ServiceTypeClusterIP || svc.Spec.Selector[LabelJob] != name || len(svc.Spec.Selector) != 1 ||
		len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 22 || svc.Spec.Ports[0].TargetPort.IntValue() != 40123 {
		t.Errorf("service spec = %+v", svc.Spec)
	}
	if o := svc.OwnerReferences; len(o) != 1 || o[0].Kind != "Job" || o[0].UID != job.UID || svc.Labels[LabelBuild] != "build-1" {
		t.Errorf("service owners %+v, labels %v; want the Job and the build's labels", o, svc.Labels)
	}
	waitFor(t, "log", func() bool { return strings.Contains(logString(&log), "after") })
	if got := logString(&log); got != "before\nafter\n" {
		t.Errorf("log = %q, want the lines around the marker only", got)
	}
	setCondition(t, cs, job, batchv1.JobComplete, "Completed", "")
	if err := <-done; err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if _, err := service(t, cs, name); err == nil {
		t.Error("service left after the step")
	}
}

// TestRunSSHCancel: cancelling an interactive step removes its Job, pods
// and Service.
func TestRunSSHCancel(t *testing.T) {
	cs := sshFake(t)
	e := newExecutor(t, cs, nil)
	s, waiting := sshStep(e, new(bytes.Buffer), executor.FormatSSHMarker(podEndpoint))
	ctx, cancel := context.WithCancel(t.Context())
	done := runAsync(ctx, e, s)
	job := getJob(t, cs, "imsbuild-0123456789abcdef0123")
	addPod(t, cs, job, "pod-1", running)
	<-waiting
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run() = %v, want context.Canceled", err)
	}
	if _, err := service(t, cs, job.Name); err == nil {
		t.Error("service left after cancel")
	}
	if _, err := cs.BatchV1().Jobs(ns).Get(context.Background(), job.Name, metav1.GetOptions{}); err == nil {
		t.Error("job left after cancel")
	}
}

// TestRunSSHNodePort: a NodePort Service is reached at the pod's node's
// address and the node port; a retried pod's marker points the Service
// at its own port.
func TestRunSSHNodePort(t *testing.T) {
	cs := sshFake(t)
	e := newExecutor(t, cs, func(c *Config) { c.SSHServiceType = corev1.ServiceTypeNodePort })
	s, waiting := sshStep(e, new(bytes.Buffer), executor.FormatSSHMarker(podEndpoint))
	done := runAsync(t.Context(), e, s)
	job := getJob(t, cs, "imsbuild-0123456789abcdef0123")
	addPodAt(t, cs, job, "pod-1", "192.0.2.5")
	if ep := <-waiting; ep.Host != "192.0.2.5" || ep.Port != 30022 {
		t.Errorf("Waiting(%s:%d), want the node's 192.0.2.5:30022", ep.Host, ep.Port)
	}
	// The retry reports another port.
	retry := podEndpoint
	retry.Port = 40999
	e.logStream = func(context.Context, string) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(executor.FormatSSHMarker(retry))), nil
	}
	addPodAt(t, cs, job, "pod-2", "192.0.2.5")
	<-waiting
	svc, err := service(t, cs, job.Name)
	if err != nil || svc.Spec.Ports[0].TargetPort.IntValue() != 40999 {
		t.Errorf("service after the retry: %+v, %v; want target port 40999", svc, err)
	}
	setCondition(t, cs, job, batchv1.JobComplete, "Completed", "")
	if err := <-done; err != nil {
		t.Fatalf("Run() = %v", err)
	}
}

// addPodAt is addPod of a running pod on the node at hostIP.
func addPodAt(t *testing.T, cs *fake.Clientset, job *batchv1.Job, name, hostIP string) {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns, Labels: job.Spec.Template.Labels, CreationTimestamp: metav1.Now(),
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: job.UID}},
		},
	}
	p, err := cs.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Running and on its node at once, as the kubelet reports it.
	p.Status = corev1.PodStatus{HostIP: hostIP, ContainerStatuses: []corev1.ContainerStatus{{Name: Container, State: running}}}
	if _, err := cs.CoreV1().Pods(ns).UpdateStatus(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestRunSSHLoadBalancer: a LoadBalancer Service is reached at the load
// balancer's address, once it has one, on port 22.
func TestRunSSHLoadBalancer(t *testing.T) {
	cs := sshFake(t)
	e := newExecutor(t, cs, func(c *Config) { c.SSHServiceType = corev1.ServiceTypeLoadBalancer })
	s, waiting := sshStep(e, new(bytes.Buffer), executor.FormatSSHMarker(podEndpoint))
	done := runAsync(t.Context(), e, s)
	job := getJob(t, cs, "imsbuild-0123456789abcdef0123")
	addPod(t, cs, job, "pod-1", running)
	if ep := <-waiting; ep.Host != "198.51.100.4" || ep.Port != 22 {
		t.Errorf("Waiting(%s:%d), want the load balancer's 198.51.100.4:22", ep.Host, ep.Port)
	}
	setCondition(t, cs, job, batchv1.JobComplete, "Completed", "")
	if err := <-done; err != nil {
		t.Fatalf("Run() = %v", err)
	}
}

// TestRunSSHBadMarker: a marker a pod made up (a host that is no address)
// makes no Service and no waiting event; the log says why.
func TestRunSSHBadMarker(t *testing.T) {
	cs := sshFake(t)
	e := newExecutor(t, cs, nil)
	var log bytes.Buffer
	s, waiting := sshStep(e, &log, executor.SSHMarker+`{"host":"evil.example","port":22}`+"\n")
	done := runAsync(t.Context(), e, s)
	job := getJob(t, cs, "imsbuild-0123456789abcdef0123")
	addPod(t, cs, job, "pod-1", running)
	waitFor(t, "log", func() bool { return strings.Contains(logString(&log), "unusable SSH environment") })
	setCondition(t, cs, job, batchv1.JobComplete, "Completed", "")
	if err := <-done; err != nil {
		t.Fatalf("Run() = %v", err)
	}
	select {
	case ep := <-waiting:
		t.Errorf("Waiting(%+v) for a bad marker", ep)
	default:
	}
	if n := countVerb(cs, "create", "services"); n != 0 {
		t.Errorf("%d services created", n)
	}
}

// TestRunNoSSH: a step without Waiting gets no listen address, and a
// marker in its log never makes a Service (nor reaches the log: marker
// lines are not for people).
func TestRunNoSSH(t *testing.T) {
	cs := sshFake(t)
	e := newExecutor(t, cs, nil)
	var log bytes.Buffer
	s, _ := sshStep(e, &log, executor.FormatSSHMarker(podEndpoint)+"text\n")
	s.Waiting = nil
	done := runAsync(t.Context(), e, s)
	job := getJob(t, cs, "imsbuild-0123456789abcdef0123")
	if env := job.Spec.Template.Spec.Containers[0].Env; len(env) != 2 {
		t.Errorf("env = %+v, want the step's only", env)
	}
	addPod(t, cs, job, "pod-1", running)
	waitFor(t, "log", func() bool { return strings.Contains(logString(&log), "text") })
	setCondition(t, cs, job, batchv1.JobComplete, "Completed", "")
	if err := <-done; err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if l := logString(&log); l != "text\n" {
		t.Errorf("log %q, want the text line only", l)
	}
	if n := countVerb(cs, "create", "services"); n != 0 {
		t.Errorf("%d services created", n)
	}
}
