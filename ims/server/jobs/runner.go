package jobs

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/local"
	"github.com/imsbuild/imsbuild/cache/tiered"
	"github.com/imsbuild/imsbuild/engine"
	"github.com/imsbuild/imsbuild/executor"
	"github.com/imsbuild/imsbuild/ims/server/blob"
	"github.com/imsbuild/imsbuild/ims/server/store"
	"github.com/imsbuild/imsbuild/internal/treehash"
)

// Config is what New needs. Store, Blobs and CacheDir are required.
type Config struct {
	Store *store.Store
	Blobs *blob.Store
	// CacheDir is the imsbuild cache every job builds through, so that a
	// second job of an unchanged recipe is a cache hit.
	CacheDir string
	// ImageBucket is the S3 bucket jobs upload images to (default
	// boot-images).
	ImageBucket string
	// MaxJobs jobs run at once; the others wait in status creating
	// (default 1).
	MaxJobs int
	// SSHHost is the host name the jobs' SSH environments are reached at
	// (connection_info); SSHPortFirst..SSHPortLast the ports they listen
	// on, one per job. A job that needs a port when all are taken is
	// refused.
	SSHHost                   string
	SSHPortFirst, SSHPortLast int
	// CACerts are PEM certificates a create job trusts while it installs
	// packages and adds to the image (IMS's build-ca-rpm).
	CACerts []string
	// Environ is the process environment the engine takes its allowlisted
	// variables from (proxies, SOURCE_DATE_EPOCH).
	Environ []string
	// Signer, when set, signs every job image's provenance, uploaded
	// beside its artifacts as provenance.intoto.jsonl (imsbuild serve
	// --signing-key); Version is recorded in it.
	Signer  crypto.Signer
	Version string
	// Remote is a remote cache that every job builds through, writing
	// what it builds there (imsbuild serve --cache-to); RemoteURL is its
	// URL as `imsbuild internal run-step --cache` opens it. Optional
	// without Executor, required with it.
	Remote    tiered.Remote
	RemoteURL string
	// Executor, when set, builds every missing step of a create or
	// customize job elsewhere (imsbuild serve --executor kubernetes: a
	// Kubernetes Job per step: kiwi prepare and pack; the customize
	// step, whose SSH environment opens in its pod), sharing Remote with
	// it; the local executor builds SSH jobs in this process. The
	// record's kubernetes_job and kubernetes_namespace name the first Job
	// the job started, kubernetes_service the Service of a pod's SSH
	// environment; the ConfigMap and PVC fields stay empty, as nothing
	// else is created. A create job with enable_debug opens its debug
	// shell in the failed step's pod the same way.
	Executor executor.Executor
	// Registry receives the job metrics (the server's registry).
	Registry *prometheus.Registry
	Logger   *slog.Logger
	Now      func() time.Time
}

// cancelWait bounds how long Cancel waits for a job's cleanup.
const cancelWait = 2 * time.Minute

// Runner runs IMS jobs. It implements the server's Runner.
type Runner struct {
	cfg    Config
	log    *slog.Logger
	logDir string // one log file per job: <data dir>/job-logs/<id>.log
	cache  *local.Cache
	// store and actions are what the jobs' engines build through: the
	// local cache, behind Remote when there is one.
	store   cache.Store
	actions cache.LockingActionCache
	stat    *treehash.StatCache
	// run runs one job; dispatch by job type, replaced by tests.
	run func(ctx context.Context, j *jobRun) error

	// base ends when the runner closes; every job's context derives from it.
	base     context.Context
	stopJobs context.CancelFunc

	mu      sync.Mutex
	queue   []*task          // admitted, waiting for a slot (status creating)
	running map[string]*task // by job id
	ports   map[int]string   // SSH port → job id
	closed  bool

	duration *prometheus.HistogramVec
	steps    *prometheus.CounterVec // engine steps by result (cache hits)
}

// task is one admitted job.
type task struct {
	job    store.Job
	port   int // 0: the job has no SSH environment
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed once the job's work is undone
}

// New returns a runner. It marks every job the store has in a running
// status as error: a job does not survive the server that ran it.
func New(cfg Config) (*Runner, error) {
	if cfg.Store == nil || cfg.Blobs == nil || cfg.CacheDir == "" {
		return nil, errors.New("new job runner: a store, an s3 store and a cache directory are required")
	}
	if (cfg.Remote == nil) != (cfg.RemoteURL == "") {
		return nil, errors.New("new job runner: a remote cache needs its URL")
	}
	if cfg.Executor != nil && cfg.Remote == nil {
		return nil, errors.New("new job runner: an executor builds steps elsewhere and needs a remote cache to share them")
	}
	if cfg.ImageBucket == "" {
		cfg.ImageBucket = "boot-images"
	}
	if cfg.MaxJobs < 1 {
		cfg.MaxJobs = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	r := &Runner{
		cfg: cfg, log: cfg.Logger, logDir: filepath.Join(cfg.Store.Dir(), "job-logs"),
		running: map[string]*task{}, ports: map[int]string{},
	}
	r.run = r.dispatch
	if err := os.MkdirAll(r.logDir, 0o750); err != nil {
		return nil, fmt.Errorf("job logs: %w", err)
	}
	if err := r.failOrphans(); err != nil {
		return nil, err
	}
	if err := r.registerMetrics(); err != nil {
		return nil, err
	}
	c, err := local.Open(cfg.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("open cache: %w", err)
	}
	sc, err := treehash.OpenStatCache(c.StatCachePath())
	if err != nil {
		return nil, fmt.Errorf("open stat cache: %w", err)
	}
	r.cache, r.stat = c, sc
	r.store, r.actions = c, c.Actions()
	if cfg.Remote != nil {
		tc := tiered.New(c, nil, cfg.Remote, tiered.WithOnWarning(func(err error) {
			r.log.Warn("remote cache", "err", err)
		}))
		r.store, r.actions = tc, tc.Actions()
	}
	// Remove the scratch directories of jobs a killed server left behind.
	if _, release, err := engine.AcquireWorkDir(filepath.Join(cfg.CacheDir, "work"), r.log); err == nil {
		release()
	}
	r.base, r.stopJobs = context.WithCancel(context.Background())
	return r, nil
}

// SSHHost is the host the jobs' connection_info names.
func (r *Runner) SSHHost() string { return r.cfg.SSHHost }

// terminal reports whether a job status is final.
func terminal(status string) bool { return status == "success" || status == "error" }

// failOrphans sets every unfinished job to error: it was queued or running
// in a server that is gone, and nothing of it runs any more.
func (r *Runner) failOrphans() error {
	var ids []string
	err := r.cfg.Store.Jobs.Update(func(tx store.Tx[store.Job]) error {
		var orphans []store.Job
		tx.Each(func(j store.Job) bool {
			if !terminal(j.Status) {
				orphans = append(orphans, j)
			}
			return true
		})
		for _, j := range orphans {
			j.Status = "error" // the SSH containers stay pending, as in IMS
			ids = append(ids, j.ID)
			if err := tx.Put(j); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("fail jobs of the last run: %w", err)
	}
	for _, id := range ids {
		r.log.Warn("job was running when the server stopped: status error", "job", id)
		r.appendLog(id, "imsbuild serve: the server stopped while this job ran; status error\n")
	}
	return nil
}

// appendLog adds a line to a job's log file, best effort.
func (r *Runner) appendLog(id, line string) {
	f, err := os.OpenFile(r.logPath(id), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = io.WriteString(f, line)
}

func (r *Runner) logPath(id string) string { return filepath.Join(r.logDir, id+".log") }

// Log opens the log of job id.
func (r *Runner) Log(id string) (io.ReadCloser, error) {
	if !validID(id) {
		return nil, os.ErrNotExist
	}
	return os.Open(r.logPath(id))
}

// validID accepts the ids the server makes (UUIDs), so that an id never
// names a path outside the log directory.
func validID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i, c := range id {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f':
		default:
			return false
		}
	}
	return true
}

// Start admits job: it gives the job an SSH port when it has SSH
// containers, stores the record and queues it.
func (r *Runner) Start(_ context.Context, job store.Job) (store.Job, error) {
	if !validID(job.ID) {
		return job, fmt.Errorf("start job: bad id %q", job.ID)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return job, errors.New("start job: the server is stopping")
	}
	t := &task{done: make(chan struct{})}
	if r.cfg.Executor != nil {
		// The job names only Kubernetes objects that exist: its Job's
		// name once the executor created it (jobExecutor), a customize
		// job's Service once its pod waits (customizeStatus), no
		// ConfigMap or PVC, which imsbuild does not create.
		job.KubernetesJob, job.KubernetesService, job.KubernetesConfigmap = "", "", ""
		job.KubernetesPVC, job.KubernetesNamespace = "", ""
	}
	if len(job.SSHContainers) > 0 && r.sshInPod(job) {
		// Its SSH environment opens in the step's pod: connection_info
		// names the pod's Service once it waits (recordService).
		job.SSHContainers = slices.Clone(job.SSHContainers)
		for i := range job.SSHContainers {
			job.SSHContainers[i].ConnectionInfo = nil
		}
	} else if len(job.SSHContainers) > 0 {
		port, err := r.allocPortLocked(job.ID)
		if err != nil {
			return job, err
		}
		t.port = port
		job.SSHContainers = slices.Clone(job.SSHContainers)
		for i := range job.SSHContainers {
			info := store.ConnectionInfo{Host: r.cfg.SSHHost, Port: port}
			job.SSHContainers[i].ConnectionInfo = map[string]store.ConnectionInfo{"customer_access": info, "cluster.local": info}
		}
	}
	if err := r.cfg.Store.Jobs.Put(job); err != nil {
		delete(r.ports, t.port)
		return job, fmt.Errorf("store job: %w", err)
	}
	t.job = job
	t.ctx, t.cancel = context.WithCancel(r.base)
	r.queue = append(r.queue, t)
	r.pumpLocked()
	return job, nil
}

// sshInPod reports whether job's SSH environment opens in its step's pod
// (a customize job's, a create job's enable_debug shell): with an
// executor that lets people in there (the Kubernetes executor; not the
// local one, whose SSH jobs build in this process as without an
// executor).
func (r *Runner) sshInPod(job store.Job) bool {
	return executor.ReachesSSH(r.cfg.Executor) && (job.JobType == "customize" || job.JobType == "create" && job.EnableDebug)
}

// allocPortLocked takes the first port of the range that no job holds and
// nothing else listens on.
func (r *Runner) allocPortLocked(id string) (int, error) {
	if r.cfg.SSHPortFirst == 0 {
		return 0, errors.New("start job: no SSH port range")
	}
	for p := r.cfg.SSHPortFirst; p <= r.cfg.SSHPortLast; p++ {
		if _, taken := r.ports[p]; taken {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort(listenHost(r.cfg.SSHHost), strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		r.ports[p] = id
		return p, nil
	}
	return 0, fmt.Errorf("start job: every SSH port of %d-%d is in use", r.cfg.SSHPortFirst, r.cfg.SSHPortLast)
}

// listenHost is the address an SSH environment listens on for host: the
// host itself when it is an IP address of this machine, else every
// address (a DNS name may point at any of them).
func listenHost(host string) string {
	if ip := net.ParseIP(host); ip != nil {
		return host
	}
	if host == "localhost" {
		return "127.0.0.1"
	}
	return ""
}

// pumpLocked starts queued jobs while there are free slots.
func (r *Runner) pumpLocked() {
	for len(r.running) < r.cfg.MaxJobs && len(r.queue) > 0 && !r.closed {
		t := r.queue[0]
		r.queue = r.queue[1:]
		r.running[t.job.ID] = t
		go r.execute(t)
	}
}

// execute runs one job to its end and sets its final status.
func (r *Runner) execute(t *task) {
	start := time.Now()
	err := r.runTask(t)
	status := "success"
	if err != nil {
		status = "error"
	}
	if t.ctx.Err() == nil || r.isClosed() {
		// A job cancelled by DELETE has no record left to update.
		if serr := r.setStatus(t.job.ID, status, nil); serr != nil {
			r.log.Error("set job status", "job", t.job.ID, "status", status, "err", serr)
		}
	}
	t.cancel()
	r.duration.WithLabelValues(t.job.JobType, status).Observe(time.Since(start).Seconds())
	r.mu.Lock()
	delete(r.running, t.job.ID)
	if t.port != 0 {
		delete(r.ports, t.port)
	}
	r.pumpLocked()
	r.mu.Unlock()
	close(t.done)
}

func (r *Runner) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// runTask opens the job's log and runs it; the log says how it ended.
func (r *Runner) runTask(t *task) (err error) {
	logf, err := os.OpenFile(r.logPath(t.job.ID), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		r.log.Error("open job log", "job", t.job.ID, "err", err)
		return err
	}
	defer logf.Close()
	lw := &lockedWriter{w: logf}
	j := &jobRun{job: t.job, log: lw, r: r, sshHost: r.cfg.SSHHost, sshPort: t.port}
	fmt.Fprintf(lw, "%s imsbuild serve: %s job %s started\n", r.cfg.Now().UTC().Format(time.RFC3339), t.job.JobType, t.job.ID)
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("job panicked: %v", v)
			r.log.Error("job panicked", "job", t.job.ID, "panic", v)
		}
		switch {
		case err == nil:
			fmt.Fprintf(lw, "%s imsbuild serve: job succeeded\n", r.cfg.Now().UTC().Format(time.RFC3339))
		case t.ctx.Err() != nil:
			fmt.Fprintf(lw, "%s imsbuild serve: job cancelled: %v\n", r.cfg.Now().UTC().Format(time.RFC3339), err)
		default:
			fmt.Fprintf(lw, "%s imsbuild serve: job failed: %v\n", r.cfg.Now().UTC().Format(time.RFC3339), err)
		}
	}()
	err = r.run(t.ctx, j)
	if err == nil && t.ctx.Err() != nil {
		err = t.ctx.Err()
	}
	return err
}

// dispatch runs a job by its type.
func (r *Runner) dispatch(ctx context.Context, j *jobRun) error {
	switch j.job.JobType {
	case "create":
		return runCreate(ctx, j)
	case "customize":
		return runCustomize(ctx, j)
	}
	return fmt.Errorf("unknown job type %q", j.job.JobType)
}

// setStatus sets job id's status, and applies fn to the record when fn is
// not nil. A record that is gone (deleted) stays gone, and a final status
// stays final.
func (r *Runner) setStatus(id, status string, fn func(*store.Job)) error {
	return r.cfg.Store.Jobs.Update(func(tx store.Tx[store.Job]) error {
		j, ok := tx.Get(id)
		if !ok || terminal(j.Status) {
			return nil
		}
		if status != "" {
			j.Status = status
		}
		if fn != nil {
			fn(&j)
		}
		return tx.Put(j)
	})
}

// Cancel stops job id: a queued job never starts; a running job's context
// ends, and Cancel waits until its cleanup is done.
func (r *Runner) Cancel(id string) {
	r.mu.Lock()
	for i, t := range r.queue {
		if t.job.ID == id {
			r.queue = slices.Delete(r.queue, i, i+1)
			if t.port != 0 {
				delete(r.ports, t.port)
			}
			r.mu.Unlock()
			t.cancel()
			close(t.done)
			return
		}
	}
	t, ok := r.running[id]
	r.mu.Unlock()
	if !ok {
		return
	}
	t.cancel()
	select {
	case <-t.done:
	case <-time.After(cancelWait):
		r.log.Error("cancelled job still cleaning up", "job", id, "waited", cancelWait)
	}
}

// Close cancels every job, waits for their cleanup and saves the stat
// cache. The cancelled jobs end in status error.
func (r *Runner) Close() error {
	r.mu.Lock()
	r.closed = true
	queued := r.queue
	r.queue = nil
	var running []*task
	for _, t := range r.running {
		running = append(running, t)
	}
	r.mu.Unlock()
	for _, t := range queued {
		t.cancel()
		if err := r.setStatus(t.job.ID, "error", nil); err != nil {
			r.log.Error("set job status", "job", t.job.ID, "err", err)
		}
		r.appendLog(t.job.ID, "imsbuild serve: the server stopped before this job ran; status error\n")
	}
	r.stopJobs()
	for _, t := range running {
		<-t.done
	}
	return r.stat.Save()
}

// lockedWriter serializes writes to a job's log: the engine's events and
// the job's own lines come from many goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
