package engine

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/imsbuild/imsbuild/builders/steps"
	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/local"
	"github.com/imsbuild/imsbuild/cache/tiered"
	"github.com/imsbuild/imsbuild/executor"
	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/spec"
)

// podExecutor runs each step as `imsbuild internal run-step` would, in
// this process: a second engine on the build (the remote cache is the
// fake build's cache) that BuildSteps the step with the fake ops of pod.
type podExecutor struct {
	t   *testing.T
	b   *fakeBuild
	pod *fakeSteps

	real bool // the pod runs the real ops instead of the fake ones

	mu    sync.Mutex
	runs  []executor.Step
	fail  error // returned by Run after writing to the log
	noRes bool  // Run succeeds without building

	running, maxRunning int
	wait                func() // when set, called in Run while the step counts as running
}

func (x *podExecutor) Run(ctx context.Context, s executor.Step) error {
	x.mu.Lock()
	x.runs = append(x.runs, s)
	x.running++
	x.maxRunning = max(x.maxRunning, x.running)
	x.mu.Unlock()
	defer func() { x.mu.Lock(); x.running--; x.mu.Unlock() }()
	if x.wait != nil {
		x.wait()
	}
	fmt.Fprintf(s.Log, "pod: building %s\n", s.Step)
	if x.fail != nil {
		return x.fail
	}
	if x.noRes {
		return nil
	}
	// Its own scratch cache, the fake build's as the remote behind it.
	own, err := local.Open(x.t.TempDir())
	if err != nil {
		return err
	}
	tc := tiered.New(own, nil, asRemote{x.b.cache})
	e, err := New(x.b.cfg, tc, tc.Actions(), Options{WorkDir: x.t.TempDir(), StateDir: x.t.TempDir(), HMACKey: []byte("0123456789abcdef0123456789abcdef"), Events: func(ev Event) {
		if ev.Status == StatusLog {
			fmt.Fprintln(s.Log, ev.Line)
		}
	}})
	if err != nil {
		return err
	}
	if !x.real {
		e.newOp = func(st *Step) steps.Op { return &fakeOp{f: x.pod, s: st} }
	}
	if i := slices.Index(s.Args, "--result-key"); i >= 0 {
		e.opts.ResultKey = s.Args[i+1]
	}
	return e.BuildStep(ctx, s.Step, x.arg(s, "--key"))
}

// sshPodExecutor is a podExecutor that reaches SSH environments: it
// reports endpoint for a step that opens one, before building it.
type sshPodExecutor struct {
	*podExecutor
	endpoint executor.SSHEndpoint
}

func (x *sshPodExecutor) ReachesSSH() bool { return true }

func (x *sshPodExecutor) Run(ctx context.Context, s executor.Step) error {
	if s.Waiting != nil {
		s.Waiting(x.endpoint)
	}
	return x.podExecutor.Run(ctx, s)
}

func (x *podExecutor) arg(s executor.Step, flag string) string {
	i := slices.Index(s.Args, flag)
	if i < 0 || i+1 >= len(s.Args) {
		x.t.Fatalf("args %q have no %s", s.Args, flag)
	}
	return s.Args[i+1]
}

// remoteBuild is a fake build whose orchestrator fails any step it would
// build itself, with a pod executor.
func remoteBuild(t *testing.T, images ...string) (*fakeBuild, *podExecutor, func(Options) (*recorder, error)) {
	b := newFakeBuild(t, images...)
	x := &podExecutor{t: t, b: b, pod: newFakeSteps()}
	build := func(opts Options) (*recorder, error) {
		opts.Executor, opts.Remote = x, &RemoteCache{Store: b.cache, URL: "s3://fake/cache"}
		opts.HMACKey = []byte("0123456789abcdef0123456789abcdef")
		opts.WorkDir = t.TempDir()
		e, rec := b.engine(t, opts)
		// The orchestrator's own builds: there must be none.
		b.steps.fail = map[string]bool{}
		for l := range b.cfg.Images {
			b.steps.fail[l] = true
		}
		return rec, e.Build(t.Context(), nil)
	}
	return b, x, build
}

// TestRemoteStepsBuildNothingHere: with an executor every step is one Run
// (args naming its id and key, privileged for a non-jailed customize,
// sandboxed for a jailed one, sensitive variables in SecretEnv only), the
// orchestrator builds nothing and reports the steps as remote, and a second
// build runs nothing.
func TestRemoteStepsBuildNothingHere(t *testing.T) {
	b, x, build := remoteBuild(t, "base", "compute<base", "gpu<compute", "other")
	b.cfg.Images["compute"].Customize = []spec.Customize{{Jail: false, Inline: "true"}}
	b.cfg.Images["gpu"].Customize = []spec.Customize{{Jail: true, Inline: "true"}}
	b.cfg.Variables = map[string]spec.Variable{
		"site":  {Value: cty.StringVal("lab7")},
		"token": {Value: cty.StringVal("s3cr3t"), Sensitive: true},
	}
	b.cfg.Sensitive = []string{"s3cr3t"}
	rec, err := build(Options{Jobs: 2, Environ: []string{"AWS_ACCESS_KEY_ID=AKID", "HOME=/root"}})
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for _, ev := range rec.events {
		switch ev.Status {
		case StatusStarted:
			keys[ev.Step] = ev.Key
			if !ev.Remote {
				t.Errorf("started event of %s is not remote", ev.Step)
			}
		case StatusDone:
			if !ev.Remote {
				t.Errorf("done event of %s is not remote", ev.Step)
			}
		}
	}
	if len(x.runs) != 4 {
		t.Fatalf("%d Runs, want 4 (one per step)", len(x.runs))
	}
	for _, s := range x.runs {
		if s.Args[0] != "internal" || s.Args[1] != "run-step" || x.arg(s, "--step") != s.Step || x.arg(s, "--key") != s.Key || keys[s.Step] != s.Key {
			t.Errorf("Run %s args %q, want run-step of the step with its key %s", s.Step, s.Args, keys[s.Step])
		}
		// A non-jailed customize needs a privileged pod; a jailed one
		// runs sandboxed, unprivileged (see privileged, sandboxed).
		if want := s.Step == "image.compute"; s.Privileged != want {
			t.Errorf("Run %s privileged = %v, want %v", s.Step, s.Privileged, want)
		}
		if want := s.Step == "image.gpu"; s.Sandboxed != want {
			t.Errorf("Run %s sandboxed = %v, want %v", s.Step, s.Sandboxed, want)
		}
		if s.SecretEnv["IMSBUILD_VAR_token"] != "s3cr3t" || s.SecretEnv[HMACKeyEnv] == "" || s.SecretEnv["AWS_ACCESS_KEY_ID"] != "AKID" {
			t.Errorf("Run %s secret env %v, want the sensitive variable, the HMAC key and the credentials", s.Step, s.SecretEnv)
		}
		for k, v := range s.Env {
			if strings.Contains(v, "s3cr3t") || k == "IMSBUILD_VAR_token" || k == "HOME" {
				t.Errorf("Run %s plain env has %s=%s", s.Step, k, v)
			}
		}
		if x.arg(s, "--bundle") != x.arg(x.runs[0], "--bundle") {
			t.Errorf("Run %s has another bundle than %s", s.Step, x.runs[0].Step)
		}
	}
	if len(x.pod.builds) != 4 {
		t.Errorf("pod built %v, want the 4 steps", x.pod.builds)
	}
	for id, n := range x.pod.builds {
		if n != 1 {
			t.Errorf("pod built %s %d times, want once", id, n)
		}
	}
	if len(b.steps.builds) != 0 {
		t.Errorf("the orchestrator built %v, want nothing", b.steps.builds)
	}

	x.runs = nil
	rec, err = build(Options{Jobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(x.runs) != 0 || rec.statuses()["image.gpu"] != StatusCached {
		t.Errorf("second build ran %d steps (statuses %v), want all cached", len(x.runs), rec.statuses())
	}
}

// TestRemoteStepFailure: a failed Run is the step's failure with the tail
// of what it streamed; a Run that records nothing is a clear failure too.
func TestRemoteStepFailure(t *testing.T) {
	_, x, build := remoteBuild(t, "base")
	x.fail = errors.New("pod exited 3")
	_, err := build(Options{})
	var se *StepError
	if !errors.As(err, &se) || !strings.Contains(se.Error(), "pod exited 3") || !strings.Contains(se.LogTail, "pod: building image.base") {
		t.Fatalf("Build() = %v, want a StepError with the pod's log tail", err)
	}
	x.fail, x.noRes = nil, true
	_, err = build(Options{})
	if !errors.As(err, &se) || !strings.Contains(se.Error(), "is not in the remote cache") {
		t.Fatalf("Build() = %v, want a StepError saying the result is missing", err)
	}
}

// TestBuildStep: the remote side refuses another key before building, and
// fails naming a parent that is not in the cache instead of building it.
func TestBuildStep(t *testing.T) {
	b := newFakeBuild(t, "base", "compute<base")
	e, _ := b.engine(t, Options{})
	err := e.BuildStep(t.Context(), "image.base", strings.Repeat("0", 64))
	if ke, ok := errors.AsType[*KeyMismatchError](err); !ok || ke.Want != strings.Repeat("0", 64) || len(ke.Got) != 64 || !strings.Contains(err.Error(), ke.Got) {
		t.Fatalf("BuildStep(wrong key) = %v, want a KeyMismatchError naming both keys", err)
	}
	e, _ = b.engine(t, Options{})
	err = e.BuildStep(t.Context(), "image.compute", strings.Repeat("0", 64))
	if pm, ok := errors.AsType[*ParentMissingError](err); !ok || pm.Step != "image.base" {
		t.Fatalf("BuildStep(parent missing) = %v, want a ParentMissingError naming image.base", err)
	}
	if len(b.steps.builds) != 0 {
		t.Fatalf("BuildStep built %v, want nothing", b.steps.builds)
	}
	if err := e.BuildStep(t.Context(), "image.nope", ""); err == nil {
		t.Fatal("BuildStep(unknown step) = nil")
	}
}

// TestExecutorNeedsRemoteCache: an executor without a remote cache is an
// error naming the fix.
func TestExecutorNeedsRemoteCache(t *testing.T) {
	b := newFakeBuild(t, "base")
	_, err := New(b.cfg, b.cache, b.cache.Actions(), Options{Executor: &podExecutor{}})
	if err == nil || !strings.Contains(err.Error(), `cache { to = "s3://`) {
		t.Fatalf("New() = %v, want an error naming the remote cache setting", err)
	}
}

// asRemote is a local cache as a tiered.Remote.
type asRemote struct{ *local.Cache }

func (r asRemote) Actions() cache.ActionCache { return r.Cache.Actions() }
func (r asRemote) Name() string               { return "fake-remote" }

// TestRemoteKiwiPrepare: a recipe image is two remote steps, its prepare
// privileged, then the image from the prepared root in the remote cache;
// kiwi runs once, in the pod; a second build runs nothing.
func TestRemoteKiwiPrepare(t *testing.T) {
	runs := testutil.FakeKiwi(t)
	srv, _ := repoServer(t)
	f := kiwiFixture(t, srv.URL+"/debian")
	b := &fakeBuild{cfg: f.cfg, cache: f.cache, steps: newFakeSteps()}
	x := &podExecutor{t: t, b: b, real: true}
	build := func() {
		t.Helper()
		e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{WorkDir: t.TempDir(), StateDir: t.TempDir(),
			Executor: x, Remote: &RemoteCache{Store: f.cache, URL: "s3://fake/cache"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Build(t.Context(), []string{"image.compute"}); err != nil {
			t.Fatalf("Build() = %v", err)
		}
	}
	build()
	var got []string
	for _, s := range x.runs {
		got = append(got, fmt.Sprintf("%s privileged=%v sandboxed=%v", s.Step, s.Privileged, s.Sandboxed))
	}
	// The fixture's compute customize is jailed: sandboxed, unprivileged.
	want := []string{"image.base/prepare privileged=true sandboxed=false", "image.base privileged=false sandboxed=false",
		"image.compute privileged=false sandboxed=true"}
	if !slices.Equal(got, want) {
		t.Errorf("Runs = %q, want %q", got, want)
	}
	if runs() != 1 {
		t.Errorf("kiwi ran %d times, want once (in the pod)", runs())
	}
	x.runs = nil
	build()
	if len(x.runs) != 0 || runs() != 1 {
		t.Errorf("second build: %d Runs, kiwi ran %d times; want none and once", len(x.runs), runs())
	}
}

// TestRemoteRefusesSSH: interactive and debug environments run only with
// an executor that reaches SSH (Kubernetes), --check with none: the flags
// are refused up front, a block when its step runs, naming the step;
// nothing is run.
func TestRemoteRefusesSSH(t *testing.T) {
	b, x, build := remoteBuild(t, "base", "compute<base")
	remote := &RemoteCache{Store: b.cache, URL: "s3://fake/cache"}
	for _, opts := range []Options{{Interactive: []string{"compute"}}, {DebugOnFailure: true}, {Check: true}} {
		opts.Executor, opts.Remote = x, remote
		if _, err := New(b.cfg, b.cache, b.cache.Actions(), opts); err == nil {
			t.Errorf("New(%+v) = nil error, want a refusal", opts)
		}
	}
	// An executor that reaches SSH takes both, not --check.
	sx := &sshPodExecutor{podExecutor: x}
	for _, opts := range []Options{{Interactive: []string{"compute"}}, {DebugOnFailure: true}} {
		opts.Executor, opts.Remote = sx, remote
		if _, err := New(b.cfg, b.cache, b.cache.Actions(), opts); err != nil {
			t.Errorf("New(%+v) = %v, want nil", opts, err)
		}
	}
	if _, err := New(b.cfg, b.cache, b.cache.Actions(), Options{Executor: sx, Remote: remote, Check: true}); err == nil {
		t.Error("New(Check, SSH executor) = nil error, want a refusal")
	}
	b.cfg.Images["compute"].Interactive = &spec.Interactive{Jail: true}
	_, err := build(Options{})
	if err == nil || !strings.Contains(err.Error(), "image.compute opens an interactive or debug SSH environment") {
		t.Fatalf("Build() = %v, want image.compute refused", err)
	}
	b.cfg.Images["compute"].Interactive = nil
	b.cfg.Images["compute"].DebugOnFailure = true
	_, err = build(Options{})
	if err == nil || !strings.Contains(err.Error(), "image.compute opens an interactive or debug SSH environment") {
		t.Fatalf("Build() = %v, want image.compute refused", err)
	}
	for _, s := range x.runs {
		if s.Step == "image.compute" {
			t.Errorf("image.compute was run")
		}
	}
}

// TestRemoteInteractive: with an executor that reaches SSH, an
// interactive step runs remotely with what the pod cannot read from the
// bundle (--interactive, the keys, the timeout), under a key of its own
// run that its result is recorded under (--result-key), never the step's;
// the executor's endpoint becomes the waiting event, the end of the run
// the resumed one; a second build runs the step again.
func TestRemoteInteractive(t *testing.T) {
	b, x, _ := remoteBuild(t, "base", "compute<base")
	ep := executor.SSHEndpoint{Host: "10.96.0.7", Port: 22, User: "root", HostKey: "SHA256:abc", Jail: true,
		ImageRoot: "/", CompleteFile: "/tmp/complete", FailedFile: "/tmp/failed",
		Service: "ns/imsbuild-x", DNSName: "imsbuild-x.ns.svc.cluster.local"}
	sx := &sshPodExecutor{podExecutor: x, endpoint: ep}
	build := func() *recorder {
		t.Helper()
		e, rec := b.engine(t, Options{Executor: sx, Remote: &RemoteCache{Store: b.cache, URL: "s3://fake/cache"},
			HMACKey: []byte("0123456789abcdef0123456789abcdef"), WorkDir: t.TempDir(),
			Interactive: []string{"compute"}, PublicKeys: []string{"ssh-ed25519 AAAA k"}, SSHTimeout: time.Minute,
			IMSLayout: true, IMSDebugLayout: true, SSHEnv: []string{"IMS_JOB_ID=j-1"}})
		if err := e.Build(t.Context(), nil); err != nil {
			t.Fatalf("Build() = %v", err)
		}
		return rec
	}
	rec := build()
	var run executor.Step
	for _, s := range x.runs {
		if s.Step == "image.compute" {
			run = s
		}
		if (s.Waiting != nil) != (s.Step == "image.compute") {
			t.Errorf("%s: Waiting set %v", s.Step, s.Waiting != nil)
		}
	}
	key := x.arg(run, "--key")
	if run.Key == key || x.arg(run, "--result-key") != run.Key {
		t.Errorf("run key %s, --key %s, --result-key %s: want a run key of its own, passed as --result-key", run.Key, key, x.arg(run, "--result-key"))
	}
	if !slices.Contains(run.Args, "--interactive") || x.arg(run, "--authorized-key") != "ssh-ed25519 AAAA k" || x.arg(run, "--ssh-timeout") != "1m0s" {
		t.Errorf("args %q lack --interactive, the key or the timeout", run.Args)
	}
	if !slices.Contains(run.Args, "--ims-layout") || !slices.Contains(run.Args, "--ims-debug-layout") || x.arg(run, "--ssh-env") != "IMS_JOB_ID=j-1" {
		t.Errorf("args %q lack IMS's layout and session variables (imsbuild serve)", run.Args)
	}
	if _, err := b.cache.Actions().Get(t.Context(), key); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("result under the step's key: %v, want none", err)
	}
	var statuses []Status
	for _, ev := range rec.events {
		if ev.Step != "image.compute" {
			continue
		}
		statuses = append(statuses, ev.Status)
		if ev.Status == StatusWaiting {
			want := &SSHInfo{Host: ep.Host, Port: ep.Port, User: ep.User, HostKey: ep.HostKey, Jail: true, ImageRoot: "/",
				CompleteFile: ep.CompleteFile, FailedFile: ep.FailedFile, Service: ep.Service, DNSName: ep.DNSName}
			if ev.SSH == nil || *ev.SSH != *want {
				t.Errorf("waiting event SSH = %+v, want %+v", ev.SSH, want)
			}
		}
	}
	keep := []Status{StatusStarted, StatusWaiting, StatusResumed, StatusDone, StatusCached, StatusFailed}
	statuses = slices.DeleteFunc(statuses, func(s Status) bool { return !slices.Contains(keep, s) })
	if want := []Status{StatusStarted, StatusWaiting, StatusResumed, StatusDone}; !slices.Equal(statuses, want) {
		t.Errorf("image.compute events %v, want %v", statuses, want)
	}
	n := len(x.runs)
	build()
	if len(x.runs) != n+1 || x.runs[n].Step != "image.compute" {
		t.Errorf("second build ran %v, want image.compute again", x.runs[n:])
	}
}

// TestBundleCanonical: two checkouts of one build at other paths stage the
// same bundle bytes; the bundle holds the build files, the plain variables
// and not the sensitive ones, the cache, -var-file files or .git.
func TestBundleCanonical(t *testing.T) {
	bundle := func() []byte {
		b := newFakeBuild(t, "base")
		varFile := filepath.Join(b.cfg.Dir, "site.imsvars.hcl")
		testutil.WriteFiles(t, b.cfg.Dir, map[string]string{
			"build.ims.hcl":       "# the build\n",
			"scripts/a.sh":        "echo a\n",
			".git/config":         "[core]\n",
			"site.imsvars.hcl":    "token = \"s3cr3t\"\n",
			"old/lab.imsvars.hcl": "token = \"s3cr3t\"\n",
			"recipes/x/cfg.xml":   "<image/>\n",
		}, 0o644)
		b.cfg.Files = map[string]*hcl.File{"build.ims.hcl": nil, varFile: nil}
		b.cfg.BuildFiles = []string{"build.ims.hcl"}
		b.cfg.Variables = map[string]spec.Variable{
			"site":  {Value: cty.StringVal("lab7")},
			"nodes": {Value: cty.ListVal([]cty.Value{cty.NumberIntVal(3)})},
			"token": {Value: cty.StringVal("s3cr3t"), Sensitive: true},
		}
		e, _ := b.engine(t, Options{HMACKey: []byte("k")})
		var buf bytes.Buffer
		if err := e.writeBundle(t.Context(), &buf); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	a, b := bundle(), bundle()
	if !bytes.Equal(a, b) {
		t.Fatal("two checkouts of one build give different bundles")
	}
	zr, err := gzip.NewReader(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		files[h.Name] = string(body)
	}
	for _, name := range []string{BundleManifestName, "build/build.ims.hcl", "build/scripts/a.sh", "build/recipes/x/cfg.xml"} {
		if _, ok := files[name]; !ok {
			t.Errorf("bundle lacks %s; has %v", name, slices.Sorted(maps.Keys(files)))
		}
	}
	for name, body := range files {
		if strings.Contains(body, "s3cr3t") || strings.HasPrefix(name, "build/.git") || strings.HasPrefix(name, "build/cache") || (strings.HasPrefix(name, "build/") && strings.HasSuffix(name, ".imsvars.hcl")) {
			t.Errorf("bundle has %s:\n%s", name, body)
		}
	}
	if v := files[BundleVarsName]; !strings.Contains(v, `site  = "lab7"`) || !strings.Contains(v, "nodes = [3]") || strings.Contains(v, "token") {
		t.Errorf("%s =\n%s\nwant site and nodes, not token", BundleVarsName, v)
	}
}

// TestRemoteJobsBound: -j bounds the remote steps running at once. Each
// Run waits (up to a deadline) until -j run, so running them one by one
// fails too.
func TestRemoteJobsBound(t *testing.T) {
	const jobs = 2
	_, x, build := remoteBuild(t, "a", "b", "c", "d")
	x.wait = func() {
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			x.mu.Lock()
			n := x.running
			x.mu.Unlock()
			if n >= jobs {
				return
			}
		}
	}
	if _, err := build(Options{Jobs: jobs}); err != nil {
		t.Fatal(err)
	}
	if len(x.runs) != 4 || x.maxRunning != jobs {
		t.Fatalf("%d Runs, at most %d at once; want 4, %d at once (-j %d)", len(x.runs), x.maxRunning, jobs, jobs)
	}
}

// TestRemoteDebugOnFailure: with an executor that reaches SSH,
// --debug-on-failure goes to every image step's run (and each gets a
// Waiting callback and, its sessions jailed, an unprivileged sandboxed
// pod), under the step's own key: a
// debug shell does not change what a step builds.
func TestRemoteDebugOnFailure(t *testing.T) {
	b, x, _ := remoteBuild(t, "base", "compute<base")
	sx := &sshPodExecutor{podExecutor: x}
	e, _ := b.engine(t, Options{Executor: sx, Remote: &RemoteCache{Store: b.cache, URL: "s3://fake/cache"},
		HMACKey: []byte("0123456789abcdef0123456789abcdef"), WorkDir: t.TempDir(), DebugOnFailure: true,
		PublicKeys: []string{"ssh-ed25519 AAAA k"}})
	if err := e.Build(t.Context(), nil); err != nil {
		t.Fatalf("Build() = %v", err)
	}
	if len(x.runs) != 2 {
		t.Fatalf("%d runs, want 2", len(x.runs))
	}
	for _, s := range x.runs {
		if s.Waiting == nil || s.Privileged || !s.Sandboxed || !slices.Contains(s.Args, "--debug-on-failure") || slices.Contains(s.Args, "--interactive") ||
			slices.Contains(s.Args, "--result-key") || s.Key != x.arg(s, "--key") {
			t.Errorf("%s: waiting %v, privileged %v, sandboxed %v, key %s, args %q; want an unprivileged sandboxed debug run under the step's key",
				s.Step, s.Waiting != nil, s.Privileged, s.Sandboxed, s.Key, s.Args)
		}
	}
}

// TestRemotePrivilege: what each remote step asks of its environment.
// Privileged only where needed (kiwi prepare, a non-jailed customize or
// SSH environment); sandboxed, unprivileged, where jailed scripts or
// sessions run; neither for a step that runs none.
func TestRemotePrivilege(t *testing.T) {
	b := newFakeBuild(t, "plain", "jailed<plain", "mixed<plain", "ssh<plain", "sshhost<plain", "certs<plain")
	b.cfg.Images["jailed"].Customize = []spec.Customize{{Jail: true, Inline: "true"}, {Jail: true, Inline: "true"}}
	b.cfg.Images["mixed"].Customize = []spec.Customize{{Jail: true, Inline: "true"}, {Jail: false, Inline: "true"}}
	b.cfg.Images["ssh"].Interactive = &spec.Interactive{Jail: true}
	b.cfg.Images["sshhost"].Interactive = &spec.Interactive{Jail: false}
	b.cfg.Images["certs"].CACertificates = []string{"-----BEGIN CERTIFICATE-----"}
	e, _ := b.engine(t, Options{Executor: &podExecutor{}, Remote: &RemoteCache{Store: b.cache, URL: "s3://fake/cache"}, WorkDir: t.TempDir()})
	for id, want := range map[string][2]bool{ // privileged, sandboxed
		"image.plain":         {false, false},
		"image.plain/prepare": {true, false},
		"image.jailed":        {false, true},
		"image.mixed":         {true, false},
		"image.ssh":           {false, true},
		"image.sshhost":       {true, false},
		"image.certs":         {false, true},
	} {
		if got := [2]bool{e.privileged(id), e.sandboxed(id)}; got != want {
			t.Errorf("%s: privileged, sandboxed = %v, want %v", id, got, want)
		}
	}
}
