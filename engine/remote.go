package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/imsbuild/imsbuild/builders/steps"
	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/executor"
	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/spec"
)

// Remote steps (Options.Executor). The engine stays the brain: it plans,
// keys and looks up every step as in a local build. A miss does not build
// here: the engine stages the build's bundle (bundle.go) in the remote
// cache, asks the executor to run `imsbuild internal run-step` for the
// step's id and key, and then takes the result from the remote cache as a
// remote hit. The remote process loads the bundle, computes the key again
// and refuses a different one (BuildStep), so a step is never recorded
// under a key its inputs do not give.

// RemoteCache is the remote cache that the executor's steps share with
// the engine: bundles go to Store, and run-step opens URL.
type RemoteCache struct {
	Store cache.Store
	URL   string // as `imsbuild internal run-step --cache` takes it
}

// HMACKeyEnv carries the build's HMAC key (hex) to a remote step, which
// needs it to compute the same keys for sensitive values.
const HMACKeyEnv = "IMSBUILD_HMAC_KEY"

// VarEnvPrefix carries a sensitive variable to a remote step, as
// IMSBUILD_VAR_<name> carries any variable to a local build.
const VarEnvPrefix = "IMSBUILD_VAR_"

// credentialEnv are the variables the remote caches read credentials
// from (the AWS SDK chain); a remote step gets them as secrets.
var credentialEnv = []string{
	"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
	"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CA_BUNDLE", "DOCKER_CONFIG",
}

// checkRemote validates the remote-step options of opts (New).
func checkRemote(opts *Options) error {
	if opts.Executor == nil {
		return nil
	}
	switch {
	case opts.Remote == nil || opts.Remote.Store == nil || opts.Remote.URL == "":
		return errors.New(`an executor builds steps elsewhere and needs a remote cache to share them: set imsbuild { cache { to = "s3://bucket/prefix" } } (or oci://registry/repo), or --cache-to`)
	case (len(opts.Interactive) > 0 || opts.DebugOnFailure) && !executor.ReachesSSH(opts.Executor):
		return errors.New("interactive and debug SSH environments do not run with this executor: build those images without one, or with the kubernetes executor")
	case opts.Check:
		return errors.New("--check rebuilds in this process: it does not run with an executor")
	}
	if opts.BuildID == "" {
		b := make([]byte, 8)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		opts.BuildID = hex.EncodeToString(b)
	}
	return nil
}

// remoteAllowed says why image step s cannot run with the executor, if
// it cannot.
func (e *Engine) remoteAllowed(s *Step) error {
	if e.opts.Executor == nil {
		return nil
	}
	if (e.interactive(s) || e.debugOnFailure(s)) && !executor.ReachesSSH(e.opts.Executor) {
		return fmt.Errorf("%s opens an interactive or debug SSH environment, which does not run with this executor: build it without one, or with the kubernetes executor", s.ID)
	}
	return nil
}

// remoteSSH completes the run-step arguments args of step id (an image
// step or a kiwi prepare) when it may open an SSH environment
// (interactive, or debug on failure): what the pod cannot read from the
// bundle (the flags, keys and timeout of the command line), and the
// callback that turns the executor's endpoint into the waiting event. It
// returns nil for a step without one.
func (e *Engine) remoteSSH(id string, args *[]string) func(executor.SSHEndpoint) {
	image, prepare := strings.CutSuffix(id, "/prepare")
	s := e.graph.Step(image)
	if s == nil || s.Image == nil {
		return nil
	}
	interactive := !prepare && e.interactive(s)
	if !interactive && !e.debugOnFailure(s) {
		return nil
	}
	if interactive && s.Image.Interactive == nil {
		*args = append(*args, "--interactive")
	}
	if e.opts.DebugOnFailure {
		*args = append(*args, "--debug-on-failure")
	}
	for _, k := range e.opts.PublicKeys {
		*args = append(*args, "--authorized-key", k)
	}
	if e.opts.SSHTimeout > 0 {
		*args = append(*args, "--ssh-timeout", e.opts.SSHTimeout.String())
	}
	// IMS's layout and session variables (imsbuild serve's customize
	// jobs): options of the orchestrator, not of the build files.
	if e.opts.IMSLayout {
		*args = append(*args, "--ims-layout")
	}
	if e.opts.IMSDebugLayout {
		*args = append(*args, "--ims-debug-layout")
	}
	for _, kv := range e.opts.SSHEnv {
		*args = append(*args, "--ssh-env", kv)
	}
	return func(ep executor.SSHEndpoint) {
		e.emit(Event{Step: id, Status: StatusWaiting, SSH: &ep})
	}
}

// privileged reports whether step id (an image step or a prepare
// sub-step) needs a privileged environment: kiwi prepare (it mounts and
// makes loop devices), a customize with a non-jailed block (the builder's
// own tools, or a builder image under runc, which may mount), and an
// interactive or debug step whose SSH sessions are not jailed. A step
// whose scripts and sessions are all jailed is not privileged: they run
// in the hardened sandbox, which in an unprivileged pod sets itself up in
// a user namespace of its own (see sandboxed and docs/security.md).
func (e *Engine) privileged(id string) bool {
	if strings.HasSuffix(id, "/prepare") {
		return true
	}
	s := e.graph.Step(id)
	if s == nil || s.Image == nil {
		return false
	}
	if (e.interactive(s) || e.debugOnFailure(s)) && s.Image.Interactive != nil && !s.Image.Interactive.Jail {
		return true
	}
	return slices.ContainsFunc(s.Image.Customize, func(c spec.Customize) bool { return !c.Jail })
}

// sandboxed reports whether step id runs jailed scripts (its customize
// blocks, or the one that adds CA certificates) or jailed SSH sessions
// without being privileged: the executor must let it make the sandbox's
// namespaces.
func (e *Engine) sandboxed(id string) bool {
	s := e.graph.Step(id)
	if s == nil || s.Image == nil || e.privileged(id) {
		return false
	}
	return len(s.Image.Customize) > 0 || len(s.Image.CACertificates) > 0 || e.interactive(s) || e.debugOnFailure(s)
}

// archOf is the architecture step id (an image step or a prepare
// sub-step) builds for: its image's, which a kiwi image's prepare takes
// too (opsOf); "" for another step.
func (e *Engine) archOf(id string) string {
	image, _ := strings.CutSuffix(id, "/prepare")
	if s := e.graph.Step(image); s != nil && s.Image != nil {
		return s.Image.Arch
	}
	return ""
}

// runRemote builds step id, whose key missed, with the executor: its
// output streams to lw (closed here), and its result comes back from the
// remote cache through the engine's cache, as a remote hit does.
//
// An uncacheable step (interactive) records its result under a key of
// its own run, never under key: no later build takes a person's work by
// key, and the executor does not attach this run to another's.
func (e *Engine) runRemote(ctx context.Context, id, key string, canon []byte, cacheable bool, lw *stepLog, logPath string) error {
	fail := func(err error) error {
		lw.Close()
		return &StepError{Step: id, LogPath: logPath, LogTail: lw.Tail(), Err: err}
	}
	bundle, err := e.stageBundle(ctx)
	if err != nil {
		return fail(fmt.Errorf("stage bundle: %w", err))
	}
	secrets, err := e.remoteSecrets()
	if err != nil {
		return fail(err)
	}
	env := e.allowedEnv()
	if e.epochSet {
		env["SOURCE_DATE_EPOCH"] = fmt.Sprint(e.epoch)
	}
	args := []string{"internal", "run-step",
		"--cache", e.opts.Remote.URL, "--bundle", bundle, "--step", id, "--key", key}
	resultKey := key
	if !cacheable {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return fail(err)
		}
		resultKey = hex.EncodeToString(b)
		args = append(args, "--result-key", resultKey)
	}
	waiting := e.remoteSSH(id, &args)
	// stored is the result once the executor has asked for it (Stored),
	// which it may do before the step's process is seen ending.
	var stored *cache.ActionResult
	err = e.opts.Executor.Run(ctx, executor.Step{
		BuildID:    e.opts.BuildID,
		Step:       id,
		Key:        resultKey,
		Args:       args,
		Env:        env,
		SecretEnv:  secrets,
		Privileged: e.privileged(id),
		Sandboxed:  e.sandboxed(id),
		Arch:       e.archOf(id),
		Log:        lw,
		Stored: func(ctx context.Context) bool {
			res, err := e.ac.Get(ctx, resultKey)
			stored = res
			return err == nil
		},
		Waiting: waiting,
	})
	if err != nil {
		return fail(fmt.Errorf("remote step: %w", err))
	}
	lw.Close()
	if waiting != nil {
		e.emit(Event{Step: id, Status: StatusResumed})
	}
	res := stored
	if res == nil {
		res, err = e.ac.Get(ctx, resultKey)
	}
	if err != nil {
		return &StepError{Step: id, LogPath: logPath, LogTail: lw.Tail(),
			Err: fmt.Errorf("remote step ended but its result (key %s) is not in the remote cache: %w", resultKey, err)}
	}
	if err := wantOutputs(id, res); err != nil {
		return &StepError{Step: id, LogPath: logPath, LogTail: lw.Tail(), Err: err}
	}
	e.setResult(id, key, res)
	if cacheable {
		e.setLastKey(ctx, id, key, canon)
	}
	return nil
}

// wantOutputs checks that res, a result another process recorded, has the
// output that the steps after id read.
func wantOutputs(id string, res *cache.ActionResult) error {
	want := ims.ArtifactRootfs
	if strings.HasSuffix(id, "/prepare") {
		want = steps.PreparedOutput
	}
	if _, ok := res.Outputs[want]; !ok {
		return fmt.Errorf("remote result has no %s output (outputs: %v)", want, outputNames(res))
	}
	return nil
}

func outputNames(res *cache.ActionResult) []string {
	var out []string
	for k := range res.Outputs {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// remoteSecrets is the environment a remote step needs that must not be
// stored or printed: the sensitive variables, the HMAC key that keys
// them, and the remote cache's credentials.
func (e *Engine) remoteSecrets() (map[string]string, error) {
	out := map[string]string{}
	for name, v := range e.cfg.Variables {
		if !v.Sensitive || v.Value.IsNull() { // null: unset on both sides
			continue
		}
		text, err := varText(v.Value)
		if err != nil {
			return nil, fmt.Errorf("variable %s: %w", name, err)
		}
		out[VarEnvPrefix+name] = text
	}
	if len(e.cfg.Sensitive) > 0 {
		out[HMACKeyEnv] = hex.EncodeToString(e.opts.HMACKey)
	}
	for _, kv := range e.opts.Environ {
		k, v, _ := strings.Cut(kv, "=")
		if slices.Contains(credentialEnv, k) {
			out[k] = v
		}
	}
	return out, nil
}

// ParentMissingError is a parent of the step a remote process builds that
// is not in the remote cache: the orchestrator builds parents first, so it
// was removed, or the orchestrator's keys differ (BuildStep).
type ParentMissingError struct {
	Step, Key string
}

func (e *ParentMissingError) Error() string {
	return fmt.Sprintf("parent %s (key %s) is not in the remote cache; a remote step builds nothing but its own step", e.Step, e.Key)
}

// KeyMismatchError is a remote step whose key here differs from the key
// the orchestrator computed: the bundle does not reproduce the step.
type KeyMismatchError struct {
	Step, Want, Got string
}

func (e *KeyMismatchError) Error() string {
	return fmt.Sprintf("step %s: key here %s, orchestrator's key %s: refusing to build, the bundle does not reproduce the step (an input outside the build directory, env(), another imsbuild version, another qemu on the node for an emulated step?)", e.Step, e.Got, e.Want)
}

// BuildStep builds only step id (an image step, or a kiwi image's
// "image.x/prepare") whose key must be key: parents come from the cache
// and are never built (a missing one is a *ParentMissingError), and a
// different key is a *KeyMismatchError before anything is built. It is
// what `imsbuild internal run-step` runs; a step already cached succeeds.
func (e *Engine) BuildStep(ctx context.Context, id, key string) error {
	image, _ := strings.CutSuffix(id, "/prepare")
	s := e.graph.Step(image)
	if s == nil || s.Image == nil || (image != id && s.Kind != KindKiwi) {
		return &UnknownTargetError{Target: id}
	}
	e.only, e.onlyKey = id, key
	return e.Build(ctx, []string{image})
}

// checkOnly applies BuildStep's rules to step id with key in runCached,
// before the lookup (the key) and after a miss (a parent).
func (e *Engine) checkOnly(id, key string, missed bool) error {
	switch {
	case e.only == "":
		return nil
	case id == e.only && key != e.onlyKey:
		return &KeyMismatchError{Step: id, Want: e.onlyKey, Got: key}
	case id != e.only && missed:
		return &ParentMissingError{Step: id, Key: key}
	}
	return nil
}

// pastOnly reports whether image step s ends after its prepare in
// BuildStep (the step asked for is s's prepare).
func (e *Engine) pastOnly(s *Step) bool { return e.only != "" && e.only == prepareID(s) }
