package jobs

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/imsbuild/imsbuild/engine"
	"github.com/imsbuild/imsbuild/executor"
	"github.com/imsbuild/imsbuild/ims/server/blob"
	"github.com/imsbuild/imsbuild/ims/server/store"
	"github.com/imsbuild/imsbuild/spec"
)

// jobRun is one running job: what runCreate and runCustomize get, and all
// they should need of the runner.
//
// The job function owns the job between its start and its return. It
// moves the record through IMS's statuses with setStatus (fetching_recipe,
// waiting_for_repos, building_image, packaging_artifacts for a create;
// fetching_image, waiting_on_user, packaging_artifacts for a customize;
// SPEC §2.6) and, on success, sets resultant_image_id with update before it
// returns nil. The runner then sets success, or error when it returned an
// error; the job function never sets either itself. When ctx ends (DELETE
// of the job, or the server stopping) it must stop, undo what it made
// (sandboxes, mounts, scratch space, half-published objects) and return.
type jobRun struct {
	// job is the record as admitted: Start filled in the SSH containers'
	// connection_info. It is a copy; the stored record changes only
	// through setStatus and update.
	job store.Job
	// log is the job's log file (GET /v3/jobs/{id}/log). Safe for use from
	// many goroutines; the engine's events go here through engineOptions.
	log io.Writer
	// sshHost and sshPort are where the job's SSH environment must listen
	// and what connection_info says; sshPort is 0 for a job without SSH
	// containers (a create job without enable_debug).
	sshHost string
	sshPort int

	r *Runner
}

// sshListen is the address the job's SSH environment listens on: sshPort
// on sshHost when that is an address of this machine, else on every
// address (a DNS name may resolve to any of them).
func (j *jobRun) sshListen() string {
	return net.JoinHostPort(listenHost(j.sshHost), strconv.Itoa(j.sshPort))
}

// setStatus moves the job to status (one of server.JobStatuses, not
// success or error: the runner sets those). A deleted job stays deleted.
func (j *jobRun) setStatus(status string) error {
	if terminal(status) {
		return fmt.Errorf("set job status %s: the runner sets final statuses", status)
	}
	fmt.Fprintf(j.log, "%s imsbuild serve: status %s\n", j.r.cfg.Now().UTC().Format(time.RFC3339), status)
	return j.r.setStatus(j.job.ID, status, nil)
}

// update changes the stored record with fn (resultant_image_id, the SSH
// containers' status), keeping its status.
func (j *jobRun) update(fn func(*store.Job)) error {
	return j.r.setStatus(j.job.ID, "", fn)
}

// blobs is the server's S3; imageBucket the bucket of image artifacts.
// (Recipe archives and a customize job's source image are read from
// wherever their record's link points.)
func (j *jobRun) blobs() *blob.Store  { return j.r.cfg.Blobs }
func (j *jobRun) imageBucket() string { return j.r.cfg.ImageBucket }

// caCerts are the PEM certificates of --ca-cert: trusted while packages
// install and added to the image.
func (j *jobRun) caCerts() []string { return j.r.cfg.CACerts }

// store is the server's record store: a job creates its image record here.
func (j *jobRun) store() *store.Store { return j.r.cfg.Store }

// now is the server's clock.
func (j *jobRun) now() time.Time { return j.r.cfg.Now() }

// workDir makes the job's scratch directory on the cache's filesystem
// (so the engine can rename into the cache). release removes it; a
// directory a killed server left behind is removed by the next
// workDir call.
func (j *jobRun) workDir() (dir string, release func(), err error) {
	return engine.AcquireWorkDir(filepath.Join(j.r.cfg.CacheDir, "work"), j.r.log)
}

// newEngine returns an engine for cfg over the server's cache, with its
// scratch space under work (from workDir), step logs under work/logs, and
// its events written to the job's log; events, when not nil, sees every
// event too (to follow the build into IMS statuses). tune changes the
// options further (DebugOnFailure, PublicKeys, Interactive, …).
func (j *jobRun) newEngine(cfg *spec.Config, work string, events func(engine.Event), tune func(*engine.Options)) (*engine.Engine, error) {
	for _, d := range []string{"engine", "logs"} {
		if err := os.MkdirAll(filepath.Join(work, d), 0o755); err != nil {
			return nil, fmt.Errorf("engine work dir: %w", err)
		}
	}
	opts := engine.Options{
		Environ:           j.r.cfg.Environ,
		StateDir:          j.r.cfg.CacheDir,
		WorkDir:           filepath.Join(work, "engine"),
		LogDir:            filepath.Join(work, "logs"),
		StatCache:         j.r.stat,
		Logger:            j.r.log.With("job", j.job.ID),
		BootstrapCacheDir: engine.DefaultBootstrapCacheDir,
		PackageStore:      j.r.cache,
		PackageActions:    j.r.cache.Actions(),
		Signer:            j.r.cfg.Signer,
		Version:           j.r.cfg.Version,
		Events: func(ev engine.Event) {
			writeEvent(j.log, ev)
			j.r.countStep(ev)
			if events != nil {
				events(ev)
			}
		},
	}
	if tune != nil {
		tune(&opts)
	}
	return engine.New(cfg, j.r.store, j.r.actions, opts)
}

// remote sets o to build every missing step with the runner's executor
// (Config.Executor), the steps labelled with the job's id, and the first
// Job the executor starts recorded as the job's kubernetes_job.
func (j *jobRun) remote(o *engine.Options) {
	o.Executor = &jobExecutor{Executor: j.r.cfg.Executor, j: j}
	o.Remote = &engine.RemoteCache{Store: j.r.cfg.Remote, URL: j.r.cfg.RemoteURL}
	o.BuildID = j.job.ID
}

// jobExecutor is the runner's executor for one job: it records in the
// job's record what runs its first remote step (a create job's kiwi
// prepare, or its pack when the prepare was cached), as IMS names the
// one Job of a job in kubernetes_job and kubernetes_namespace. A job
// whose steps are all cached runs no Job and names none.
type jobExecutor struct {
	executor.Executor
	j *jobRun

	mu    sync.Mutex
	named bool
}

func (x *jobExecutor) Run(ctx context.Context, s executor.Step) error {
	next := s.Started
	s.Started = func(namespace, name string) {
		x.mu.Lock()
		first := !x.named
		x.named = true
		x.mu.Unlock()
		fmt.Fprintf(x.j.log, "%s imsbuild serve: step %s runs in Kubernetes Job %s/%s\n", x.j.now().UTC().Format(time.RFC3339), s.Step, namespace, name)
		if first {
			if err := x.j.update(func(job *store.Job) {
				job.KubernetesJob, job.KubernetesNamespace = name, namespace
			}); err != nil {
				x.j.r.log.Error("record kubernetes_job", "job", x.j.job.ID, "err", err)
			}
		}
		if next != nil {
			next(namespace, name)
		}
	}
	return x.Executor.Run(ctx, s)
}

// ReachesSSH implements executor.SSHExecutor: a customize job's SSH
// environment opens in its step's pod when the runner's executor lets
// people in there (the Kubernetes executor's Service).
func (x *jobExecutor) ReachesSSH() bool {
	return executor.ReachesSSH(x.Executor)
}

// recordService fills the record from the waiting event of an SSH
// environment in a pod: connection_info "cluster.local" is the Service's
// cluster DNS name and port, "customer_access" where the Service is
// reached (its cluster address, node port or load balancer: the
// executor's ssh_service_type), kubernetes_service its name, as IMS's
// name its job's.
func (j *jobRun) recordService(info *engine.SSHInfo) error {
	_, name, _ := strings.Cut(info.Service, "/")
	return j.update(func(job *store.Job) {
		job.KubernetesService = name
		for i := range job.SSHContainers {
			job.SSHContainers[i].ConnectionInfo = map[string]store.ConnectionInfo{
				"cluster.local":   {Host: info.DNSName, Port: serviceSSHPort},
				"customer_access": {Host: info.Host, Port: info.Port},
			}
		}
	})
}

// serviceSSHPort is the port of the Service the Kubernetes executor makes
// for a pod's SSH environment (executor/kubernetes.SSHPort), as IMS's.
const serviceSSHPort = 22

// writeEvent writes one engine event to a job log as a plain line.
func writeEvent(w io.Writer, ev engine.Event) {
	line := ev.Time.UTC().Format(time.RFC3339) + " " + ev.Step + " " + string(ev.Status)
	if ev.Remote {
		line += " remotely" // by the executor (a Kubernetes Job)
	}
	switch {
	case ev.Line != "":
		line += ": " + ev.Line
	case ev.Error != "":
		line += ": " + ev.Error
	case ev.Reason != "":
		line += " (" + ev.Reason + ")"
	}
	if ev.DurationMS > 0 {
		line += fmt.Sprintf(" in %.1fs", float64(ev.DurationMS)/1000)
	}
	if ev.SSH != nil {
		line += fmt.Sprintf(": ssh -p %d %s@%s", ev.SSH.Port, ev.SSH.User, ev.SSH.Host)
		if ev.SSH.Service != "" {
			line += fmt.Sprintf(" (Service %s, %s)", ev.SSH.Service, ev.SSH.DNSName)
		}
	}
	fmt.Fprintln(w, line)
}
