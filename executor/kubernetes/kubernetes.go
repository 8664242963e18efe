package kubernetes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/imsbuild/imsbuild/executor"
)

// Labels and annotations on everything the executor creates. Label values
// are at most 63 characters, so the full key and step id are annotations;
// the labels are for selectors (kubectl get jobs -l imsbuild.dev/build=…).
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelBuild     = "imsbuild.dev/build"
	LabelStep      = "imsbuild.dev/step"
	LabelKey       = "imsbuild.dev/key"
	LabelJob       = "imsbuild.dev/job"
	AnnotationKey  = "imsbuild.dev/key"
	AnnotationStep = "imsbuild.dev/step"
	managedBy      = "imsbuild"
	// Container is the name of the step's container in the pod.
	Container = "step"
	// scratchVolume is the step's emptyDir, mounted at /tmp.
	scratchVolume = "scratch"
)

// Config configures an Executor. Image is required; the zero value of every
// other field is a usable default.
type Config struct {
	// Namespace holds the Jobs; "default" when empty.
	Namespace string
	// Image is the builder image: imsbuild, kiwi-ng and the step tools.
	Image string
	// Command runs imsbuild in the image; ["imsbuild"] when empty.
	Command []string
	// ServiceAccount runs the pods; the namespace's default when empty.
	// Its token is not mounted: a step does not talk to the API.
	ServiceAccount  string
	NodeSelector    map[string]string
	Tolerations     []corev1.Toleration
	Resources       corev1.ResourceRequirements
	ImagePullPolicy corev1.PullPolicy
	// HostNetwork runs the pods in the node's network namespace, for a
	// remote cache that listens on the node only.
	HostNetwork bool
	// Parallelism bounds the Jobs this Executor runs at once; 0 is no bound.
	Parallelism int
	// TTLAfterFinished is how long a finished Job (and its pods' logs)
	// stays; one hour when zero.
	TTLAfterFinished time.Duration
	// BackoffLimit is how many times a failed, evicted or killed pod is
	// retried; 2 when nil.
	BackoffLimit *int32
	// CleanupTimeout bounds the wait for a cancelled step's pods to be
	// gone; two minutes when zero.
	CleanupTimeout time.Duration
	// LogWait bounds the wait, after a Job finished, for its pods' log
	// streams to end; 30 s when zero.
	LogWait time.Duration
	// SSHServiceType is the type of the Service that lets people into an
	// interactive step's SSH environment (ssh.go): ClusterIP when empty;
	// NodePort or LoadBalancer let people outside the cluster in, as
	// IMS's customer-access network does.
	SSHServiceType corev1.ServiceType
	// SSHServiceWait bounds the wait for a LoadBalancer Service's
	// address; five minutes when zero.
	SSHServiceWait time.Duration
	// ClusterDomain is the cluster's DNS domain, for the Service's name
	// in the waiting event; "cluster.local" when empty.
	ClusterDomain string
	Logger        *slog.Logger
	// PodLogs, when set, opens the log of a pod of the namespace instead
	// of the API's (pods/log, followed). For tests that play a cluster
	// with client-go's fake clientset, whose pod logs are a fixed text:
	// their pods' logs carry the SSH marker lines live.
	PodLogs func(ctx context.Context, pod string) (io.ReadCloser, error)
}

// Executor runs steps as Jobs. It is safe for concurrent Runs; Close stops
// its informers.
type Executor struct {
	client kubernetes.Interface
	cfg    Config
	sem    chan struct{}
	log    *slog.Logger

	startOnce sync.Once
	stop      chan struct{}
	closeOnce sync.Once
	factory   informers.SharedInformerFactory
	jobs      batchlisters.JobNamespaceLister
	pods      corelisters.PodNamespaceLister
	synced    []cache.InformerSynced

	mu      sync.Mutex
	waiters map[string][]chan struct{}

	nodes nodes // arch.go

	// logStream opens a pod's log (podLog; tests replace it: the fake
	// clientset's logs are fixed).
	logStream func(ctx context.Context, pod string) (io.ReadCloser, error)
}

var _ executor.Executor = (*Executor)(nil)

// New returns an Executor that creates Jobs with client.
func New(client kubernetes.Interface, cfg Config) (*Executor, error) {
	if cfg.Image == "" {
		return nil, errors.New("kubernetes executor: no builder image")
	}
	if cfg.Parallelism < 0 {
		return nil, fmt.Errorf("kubernetes executor: parallelism %d is negative", cfg.Parallelism)
	}
	if cfg.BackoffLimit != nil && *cfg.BackoffLimit < 0 {
		return nil, fmt.Errorf("kubernetes executor: backoff limit %d is negative", *cfg.BackoffLimit)
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "default"
	}
	if len(cfg.Command) == 0 {
		cfg.Command = []string{"imsbuild"}
	}
	if cfg.TTLAfterFinished <= 0 {
		cfg.TTLAfterFinished = time.Hour
	}
	if cfg.BackoffLimit == nil {
		cfg.BackoffLimit = ptr(int32(2))
	}
	if cfg.CleanupTimeout <= 0 {
		cfg.CleanupTimeout = 2 * time.Minute
	}
	if cfg.LogWait <= 0 {
		cfg.LogWait = 30 * time.Second
	}
	switch cfg.SSHServiceType {
	case "":
		cfg.SSHServiceType = corev1.ServiceTypeClusterIP
	case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer:
	default:
		return nil, fmt.Errorf("kubernetes executor: ssh service type %q: want ClusterIP, NodePort or LoadBalancer", cfg.SSHServiceType)
	}
	if cfg.SSHServiceWait <= 0 {
		cfg.SSHServiceWait = 5 * time.Minute
	}
	if cfg.ClusterDomain == "" {
		cfg.ClusterDomain = "cluster.local"
	}
	e := &Executor{client: client, cfg: cfg, log: cfg.Logger, stop: make(chan struct{}), waiters: map[string][]chan struct{}{}}
	if e.log == nil {
		e.log = slog.Default()
	}
	e.logStream = e.podLog
	if cfg.PodLogs != nil {
		e.logStream = cfg.PodLogs
	}
	if cfg.Parallelism > 0 {
		e.sem = make(chan struct{}, cfg.Parallelism)
	}
	return e, nil
}

// Close stops the informers. Runs still waiting fail.
func (e *Executor) Close() error {
	e.closeOnce.Do(func() {
		close(e.stop)
		if e.factory != nil {
			e.factory.Shutdown()
		}
	})
	return nil
}

// JobName is the Job of the step with key: one name per key, so that two
// orchestrators building the same key meet at one Job.
func JobName(key string) (string, error) {
	if len(key) < 20 || strings.Trim(key, "0123456789abcdef") != "" {
		return "", fmt.Errorf("step key %q is not lowercase hex of at least 20 digits", key)
	}
	return "imsbuild-" + key[:20], nil
}

// start starts the shared informers once: Jobs and pods in the namespace
// that carry the managed-by label, from every build (attaching to another
// orchestrator's Job needs to see it).
func (e *Executor) start() {
	e.startOnce.Do(func() {
		e.factory = informers.NewSharedInformerFactoryWithOptions(e.client, 0,
			informers.WithNamespace(e.cfg.Namespace),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.LabelSelector = LabelManagedBy + "=" + managedBy
			}))
		ji := e.factory.Batch().V1().Jobs()
		pi := e.factory.Core().V1().Pods()
		// Registering the handlers before Start keeps every event.
		_, _ = ji.Informer().AddEventHandler(e.handler(func(m metav1.Object) string { return m.GetName() }))
		_, _ = pi.Informer().AddEventHandler(e.handler(func(m metav1.Object) string { return m.GetLabels()[LabelJob] }))
		e.jobs = ji.Lister().Jobs(e.cfg.Namespace)
		e.pods = pi.Lister().Pods(e.cfg.Namespace)
		e.synced = []cache.InformerSynced{ji.Informer().HasSynced, pi.Informer().HasSynced}
		e.factory.Start(e.stop)
	})
}

func (e *Executor) handler(jobOf func(metav1.Object) string) cache.ResourceEventHandler {
	notify := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if m, ok := obj.(metav1.Object); ok {
			e.notify(jobOf(m))
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    notify,
		UpdateFunc: func(_, obj any) { notify(obj) },
		DeleteFunc: notify,
	}
}

// notify wakes the Runs waiting on Job name. A wake-up is a hint: the Run
// reads the state from the listers, so a full channel loses nothing.
func (e *Executor) notify(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.waiters[name] {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

func (e *Executor) watch(name string) chan struct{} {
	c := make(chan struct{}, 1)
	c <- struct{}{} // look once before the first event
	e.mu.Lock()
	e.waiters[name] = append(e.waiters[name], c)
	e.mu.Unlock()
	return c
}

func (e *Executor) unwatch(name string, c chan struct{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.waiters[name] = slices.DeleteFunc(e.waiters[name], func(x chan struct{}) bool { return x == c })
	if len(e.waiters[name]) == 0 {
		delete(e.waiters, name)
	}
}

// Run runs s as a Job (or attaches to the Job of its key) and waits for it.
func (e *Executor) Run(ctx context.Context, s executor.Step) error {
	name, err := JobName(s.Key)
	if err != nil {
		return fmt.Errorf("run %s: %w", s.Step, err)
	}
	if e.sem != nil {
		select {
		case e.sem <- struct{}{}:
			defer func() { <-e.sem }()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	sel, emulated, err := e.nodeSelector(ctx, s.Arch)
	if err != nil {
		return fmt.Errorf("run %s: %w", s.Step, err)
	}
	// An emulated step registers qemu with binfmt_misc, which only a
	// privileged pod may do.
	privileged := s.Privileged || s.Sandboxed && emulated
	e.start()
	if !e.waitSynced(ctx) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("run %s: kubernetes executor closed", s.Step)
	}
	w := e.watch(name)
	defer e.unwatch(name, w)
	r := &run{e: e, s: s, name: name, nodeSelector: sel, privileged: privileged, wake: w, logs: newLogs(e, s.Log)}
	if s.Stored != nil {
		r.stored = make(chan struct{}, 1)
		r.logs.stored = func(key string) {
			if key == s.Key {
				select {
				case r.stored <- struct{}{}:
				default: // a check is pending: it covers this line
				}
			}
		}
	}
	if s.Waiting != nil {
		r.logs.marker = func(pod string, ep executor.SSHEndpoint, err error) { r.onMarker(r.logs.ctx, pod, ep, err) }
		defer r.deleteService(ctx) // after the logs stop: no marker makes it again
	}
	defer r.logs.stop()
	err = r.run(ctx)
	if ctx.Err() != nil && r.owned {
		if cerr := r.cleanup(ctx); cerr != nil {
			return errors.Join(ctx.Err(), cerr)
		}
		return ctx.Err()
	}
	return err
}

// storedRecheck is how long a Run ignores stored markers after one that
// the remote cache did not confirm.
const storedRecheck = time.Second

// run is one Run's state.
type run struct {
	e            *Executor
	s            executor.Step
	name         string
	nodeSelector map[string]string // the configured one and the step's arch (arch.go)
	privileged   bool              // the step's pod is privileged (securityContext)
	wake         chan struct{}
	stored       chan struct{} // a pod said the result is stored (nil: not asked to listen)
	logs         *logs
	uid          types.UID // the Job followed
	owned        bool      // this Run created it (and deletes it on cancel)

	mu         sync.Mutex
	serviceUID types.UID // the SSH Service this Run made (ssh.go)
}

func (r *run) run(ctx context.Context) error {
	if err := r.createOrAttach(ctx); err != nil {
		return err
	}
	seen := false
	stored := r.stored
	var storedAgain <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.e.stop:
			return fmt.Errorf("job %s: kubernetes executor closed", r.name)
		case <-r.wake:
		case <-stored:
			// The kubelet sees the pod's container end up to a second
			// after it exits, and the informer later still: a result the
			// remote cache has is the step done. A script can print the
			// marker too, hence the check, and at most one a second after
			// a false one (a marker meanwhile waits in the channel).
			if r.s.Stored(ctx) {
				return nil
			}
			stored, storedAgain = nil, time.After(storedRecheck)
			continue
		case <-storedAgain:
			stored, storedAgain = r.stored, nil
			continue
		}
		job, err := r.e.jobs.Get(r.name)
		if apierrors.IsNotFound(err) || err == nil && job.UID != r.uid && !seen {
			if seen {
				// Deleted under us (another build was cancelled, or
				// someone ran kubectl delete): the key is still not
				// built, so build it again.
				r.e.log.Info("job deleted while running, creating it again", "step", r.s.Step, "job", r.name)
				if err := r.createOrAttach(ctx); err != nil {
					return err
				}
				seen = false
			}
			continue // the informer has not seen our Job yet
		}
		if err != nil {
			return fmt.Errorf("job %s: %w", r.name, err)
		}
		if job.UID != r.uid {
			// Replaced by another orchestrator after a deletion: follow
			// the new one, which is not ours to delete.
			r.uid, r.owned = job.UID, false
		}
		seen = true
		succeeded, err := r.pods(job)
		if err != nil {
			return err
		}
		if c := finished(job); c != nil || succeeded {
			// The pod informer may lag behind the Job's: a pod that ran
			// and ended between two events was never followed. Read
			// them from the API once so that its log is not lost.
			r.finalPods(ctx, job)
			r.logs.wait(r.e.cfg.LogWait)
			if c == nil || c.Type == batchv1.JobComplete {
				return nil
			}
			return &JobError{Job: r.name, Step: r.s.Step, Reason: c.Reason, Message: c.Message, Tail: r.logs.tail.Lines()}
		}
	}
}

// pods starts following the log of each pod of the Job that has started,
// and fails on a pod that can never start. It reports whether a pod of the
// Job succeeded: with one completion the Job is then done, and the step
// need not wait for the Job controller to say so (on the test node the
// Complete condition came about 2 s after the pod's end).
func (r *run) pods(job *batchv1.Job) (succeeded bool, err error) {
	pods, err := r.e.pods.List(labels.SelectorFromSet(labels.Set{LabelJob: r.name}))
	if err != nil {
		return false, fmt.Errorf("job %s: list pods: %w", r.name, err)
	}
	slices.SortFunc(pods, func(a, b *corev1.Pod) int { return a.CreationTimestamp.Compare(b.CreationTimestamp.Time) })
	for _, p := range pods {
		if !ownedBy(p, job.UID) {
			continue
		}
		succeeded = succeeded || p.Status.Phase == corev1.PodSucceeded
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Name != Container {
				continue
			}
			if w := cs.State.Waiting; w != nil && (w.Reason == "ErrImageNeverPull" || w.Reason == "InvalidImageName") {
				return false, fmt.Errorf("job %s: pod %s cannot start image %s: %s: %s", r.name, p.Name, r.e.cfg.Image, w.Reason, w.Message)
			}
			if cs.State.Running != nil || cs.State.Terminated != nil {
				r.logs.follow(p.Name)
			}
		}
	}
	return succeeded, nil
}

// finalPods follows the log of every pod of the finished Job that the
// informer had not shown started.
func (r *run) finalPods(ctx context.Context, job *batchv1.Job) {
	pods, err := r.e.client.CoreV1().Pods(r.e.cfg.Namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelJob + "=" + r.name})
	if err != nil {
		r.e.log.Warn("list pods of finished job", "job", r.name, "err", err)
		return
	}
	slices.SortFunc(pods.Items, func(a, b corev1.Pod) int { return a.CreationTimestamp.Compare(b.CreationTimestamp.Time) })
	for i := range pods.Items {
		p := &pods.Items[i]
		if !ownedBy(p, job.UID) {
			continue
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Name == Container && (cs.State.Running != nil || cs.State.Terminated != nil) {
				r.logs.follow(p.Name)
			}
		}
	}
}

func ownedBy(p *corev1.Pod, uid types.UID) bool {
	for _, o := range p.OwnerReferences {
		if o.UID == uid {
			return true
		}
	}
	return false
}

func finished(job *batchv1.Job) *batchv1.JobCondition {
	for i, c := range job.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return &job.Status.Conditions[i]
		}
	}
	return nil
}

// createOrAttach creates the step's Job, or attaches to the Job of the key
// that exists already. A failed Job of the key (an earlier build's, kept
// until its TTL) is deleted and created again: its failure may have been
// the environment's, and the key is still not built.
func (r *run) createOrAttach(ctx context.Context) error {
	jobs := r.e.client.BatchV1().Jobs(r.e.cfg.Namespace)
	for attempt := 0; ; attempt++ {
		if attempt == 3 {
			return fmt.Errorf("job %s: replaced too often while creating it", r.name)
		}
		secret, err := r.createSecret(ctx)
		if err != nil {
			return err
		}
		job, err := jobs.Create(ctx, r.job(secret), metav1.CreateOptions{})
		if err == nil {
			r.uid, r.owned = job.UID, true
			r.e.log.Debug("job created", "step", r.s.Step, "key", r.s.Key, "job", r.name)
			r.started()
			return r.adoptSecret(ctx, secret, job)
		}
		if secret != nil {
			r.deleteSecret(ctx, secret.Name)
		}
		if !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create job %s: %w", r.name, err)
		}
		job, err = jobs.Get(ctx, r.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue // gone between Create and Get
		}
		if err != nil {
			return fmt.Errorf("get job %s: %w", r.name, err)
		}
		if k := job.Annotations[AnnotationKey]; k != r.s.Key {
			return fmt.Errorf("job %s exists for key %q, not %s: delete it or use another namespace", r.name, k, r.s.Key)
		}
		if c := finished(job); job.DeletionTimestamp == nil && (c == nil || c.Type == batchv1.JobComplete) {
			r.uid, r.owned = job.UID, false
			r.e.log.Info("attached to the job of the key", "step", r.s.Step, "key", r.s.Key, "job", r.name, "build", job.Labels[LabelBuild])
			r.started()
			return nil
		}
		if job.DeletionTimestamp == nil {
			fg := metav1.DeletePropagationForeground
			err := jobs.Delete(ctx, r.name, metav1.DeleteOptions{PropagationPolicy: &fg, Preconditions: &metav1.Preconditions{UID: &job.UID}})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				return fmt.Errorf("delete failed job %s: %w", r.name, err)
			}
		}
		if err := r.waitGone(ctx, job.UID); err != nil {
			return err
		}
	}
}

// started tells the step's caller the Job that runs it (Step.Started).
func (r *run) started() {
	if r.s.Started != nil {
		r.s.Started(r.e.cfg.Namespace, r.name)
	}
}

// createSecret stores the step's sensitive environment in a Secret of its
// own (a random name: never another run's stale values). It returns nil
// when there is none.
func (r *run) createSecret(ctx context.Context) (*corev1.Secret, error) {
	if len(r.s.SecretEnv) == 0 {
		return nil, nil
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("secret name: %w", err)
	}
	name := r.name + "-env-" + hex.EncodeToString(b[:])
	data := make(map[string][]byte, len(r.s.SecretEnv))
	for k, v := range r.s.SecretEnv {
		data[k] = []byte(v)
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: r.e.cfg.Namespace, Labels: r.labels()},
		Type:       corev1.SecretTypeOpaque,
		Data:       data,
	}
	sec, err := r.e.client.CoreV1().Secrets(r.e.cfg.Namespace).Create(ctx, sec, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create secret for job %s: %w", r.name, err)
	}
	return sec, nil
}

// adoptSecret makes the Job the Secret's owner, so that the garbage
// collector deletes it with the Job.
func (r *run) adoptSecret(ctx context.Context, sec *corev1.Secret, job *batchv1.Job) error {
	if sec == nil {
		return nil
	}
	secrets := r.e.client.CoreV1().Secrets(r.e.cfg.Namespace)
	sec.OwnerReferences = []metav1.OwnerReference{{
		APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: job.UID,
	}}
	if _, err := secrets.Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("own secret of job %s: %w", r.name, err)
	}
	return nil
}

func (r *run) deleteSecret(ctx context.Context, name string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := r.e.client.CoreV1().Secrets(r.e.cfg.Namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		r.e.log.Warn("delete unused secret", "step", r.s.Step, "secret", name, "err", err)
	}
}

// cleanup deletes the Job this Run created, with foreground propagation
// (the Job goes after its pods), and waits until the Job and its pods are
// gone, bounded by CleanupTimeout. It runs after ctx is cancelled.
func (r *run) cleanup(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.e.cfg.CleanupTimeout)
	defer cancel()
	fg := metav1.DeletePropagationForeground
	err := r.e.client.BatchV1().Jobs(r.e.cfg.Namespace).Delete(ctx, r.name,
		metav1.DeleteOptions{PropagationPolicy: &fg, Preconditions: &metav1.Preconditions{UID: &r.uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete job %s: %w", r.name, err)
	}
	return r.waitGone(ctx, r.uid)
}

// waitGone waits until the Job with uid and its pods are gone.
func (r *run) waitGone(ctx context.Context, uid types.UID) error {
	for {
		if r.gone(uid) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("job %s: wait for its pods to be gone: %w", r.name, ctx.Err())
		case <-r.e.stop:
			return fmt.Errorf("job %s: kubernetes executor closed", r.name)
		case <-r.wake:
		}
	}
}

func (r *run) gone(uid types.UID) bool {
	if job, err := r.e.jobs.Get(r.name); err == nil && job.UID == uid {
		return false
	}
	pods, _ := r.e.pods.List(labels.SelectorFromSet(labels.Set{LabelJob: r.name}))
	for _, p := range pods {
		if ownedBy(p, uid) {
			return false
		}
	}
	return true
}

func (r *run) labels() map[string]string {
	return map[string]string{
		LabelManagedBy: managedBy,
		LabelBuild:     labelValue(r.s.BuildID),
		LabelStep:      labelValue(r.s.Step),
		LabelKey:       labelValue(r.s.Key),
		LabelJob:       r.name,
	}
}

// job is the Job of the step. The sensitive environment is only named
// (secret holds it), never written into the spec.
func (r *run) job(secret *corev1.Secret) *batchv1.Job {
	cfg := r.e.cfg
	l := r.labels()
	env := make([]corev1.EnvVar, 0, len(r.s.Env))
	for _, k := range sortedKeys(r.s.Env) {
		env = append(env, corev1.EnvVar{Name: k, Value: r.s.Env[k]})
	}
	if r.s.Waiting != nil {
		env = append(env, sshEnv()...)
	}
	c := corev1.Container{
		Name:            Container,
		Image:           cfg.Image,
		Command:         cfg.Command,
		Args:            r.s.Args,
		Env:             env,
		Resources:       cfg.Resources,
		ImagePullPolicy: cfg.ImagePullPolicy,
		// The step's scratch space (run-step works in $TMPDIR) on the
		// node's file system: on the container's overlay root, overlay
		// mounts of parent trees fail (EINVAL) and every parent was
		// unpacked in full.
		VolumeMounts: []corev1.VolumeMount{{Name: scratchVolume, MountPath: "/tmp"}},
	}
	if secret != nil {
		c.EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: secret.Name}}}}
	}
	c.SecurityContext = r.securityContext()
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name:        r.name,
			Namespace:   cfg.Namespace,
			Labels:      l,
			Annotations: map[string]string{AnnotationKey: r.s.Key, AnnotationStep: r.s.Step},
		},
		Spec: batchv1.JobSpec{
			Parallelism:             ptr(int32(1)),
			Completions:             ptr(int32(1)),
			BackoffLimit:            cfg.BackoffLimit,
			TTLSecondsAfterFinished: ptr(int32(cfg.TTLAfterFinished / time.Second)),
			// A retry starts once the failed pod is gone: two pods
			// never build one key at once.
			PodReplacementPolicy: ptr(batchv1.Failed),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: l, Annotations: map[string]string{AnnotationKey: r.s.Key, AnnotationStep: r.s.Step}},
				Spec: corev1.PodSpec{
					RestartPolicy:                corev1.RestartPolicyNever,
					ServiceAccountName:           cfg.ServiceAccount,
					AutomountServiceAccountToken: ptr(false),
					EnableServiceLinks:           ptr(false),
					NodeSelector:                 r.nodeSelector,
					Tolerations:                  cfg.Tolerations,
					HostNetwork:                  cfg.HostNetwork,
					Containers:                   []corev1.Container{c},
					Volumes:                      []corev1.Volume{{Name: scratchVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
				},
			},
		},
	}
}

// securityContext is the step container's: privileged for what needs it
// (kiwi prepare, non-jailed customize, SSH environments, emulation);
// for a sandboxed step (jailed customize), an unprivileged root with the
// runtime's default capabilities, no privilege escalation, and seccomp and
// AppArmor unconfined, since the runtime's default profiles refuse the
// user, mount and PID namespaces and the mounts the hardened sandbox makes
// for itself; it applies its own seccomp filter to the script. Other steps
// get nothing (the cluster's defaults).
func (r *run) securityContext() *corev1.SecurityContext {
	switch {
	case r.privileged:
		return &corev1.SecurityContext{Privileged: ptr(true)}
	case r.s.Sandboxed:
		return &corev1.SecurityContext{
			Privileged:               ptr(false),
			AllowPrivilegeEscalation: ptr(false),
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined},
			AppArmorProfile:          &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined},
		}
	}
	return nil
}

// labelValue makes s a valid label value: at most 63 characters of
// [A-Za-z0-9-_.], starting and ending with an alphanumeric.
func labelValue(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '_'
		}
	}
	if len(b) > 63 {
		b = b[:63]
	}
	isAlnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
	for len(b) > 0 && !isAlnum(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && !isAlnum(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return string(b)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func ptr[T any](v T) *T { return &v }

// waitSynced waits for the informers' first list, until ctx is done or the
// Executor is closed.
func (e *Executor) waitSynced(ctx context.Context) bool {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-e.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return cache.WaitForCacheSync(ctx.Done(), e.synced...)
}

// JobError is a step whose Job failed: the Job's reason and the last lines
// of its pods' logs.
type JobError struct {
	Job, Step, Reason, Message string
	Tail                       []string
}

func (e *JobError) Error() string {
	msg := fmt.Sprintf("step %s: job %s failed: %s", e.Step, e.Job, e.Reason)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if len(e.Tail) > 0 {
		msg += "\n" + strings.Join(e.Tail, "\n")
	}
	return msg
}
