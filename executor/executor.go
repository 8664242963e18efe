// Package executor is the seam between the engine, which plans, keys and
// looks up every step, and a place that builds a step elsewhere (a
// Kubernetes Job, a local process in tests).
//
// The engine stays the brain: before Run it has put everything the step
// needs into the remote cache (the step's bundle: build files and inputs;
// parent outputs are already there by key). Run starts `imsbuild` with
// Step.Args in the remote place and returns once that process has exited:
// nil means the step's outputs and action record are in the remote cache.
// The package has no dependencies so that an executor does not import the
// engine and the engine does not import client-go.
package executor

import (
	"context"
	"io"
)

// Executor runs steps somewhere other than the local process.
type Executor interface {
	// Run runs one step to completion (retrying as the executor's policy
	// says) and streams its output to s.Log. Cancelling ctx stops the
	// step and removes what Run created for it.
	Run(ctx context.Context, s Step) error
}

// ArchRouter is an Executor that chooses where a step runs by its
// architecture (Step.Arch). The engine asks it before keying a step: the
// key of a step whose programs run emulated names the emulator, and a
// native one's does not (builders/steps), so the key must describe the
// place Run will use. An Executor that is not an ArchRouter runs every
// step on machines like the orchestrator's host, and keys follow the host.
type ArchRouter interface {
	Executor
	// Native reports whether a step of arch (x86_64, aarch64) runs
	// natively where Run sends it, rather than under emulation. The
	// answer for an arch does not change during the Executor's life.
	Native(ctx context.Context, arch string) (bool, error)
}

// Step is one step to run remotely.
type Step struct {
	// BuildID names the build invocation (one per `imsbuild build`); it
	// labels everything created for the build.
	BuildID string
	// Step is the step's id, e.g. "image.compute" or "image.compute/prepare".
	Step string
	// Key is the step's cache key (hex); two Runs with one Key build the
	// same outputs, so an executor may run them once.
	Key string
	// Args are the arguments of the `imsbuild` command that builds the step.
	Args []string
	// Env is the command's plain environment.
	Env map[string]string
	// SecretEnv is environment that must not be stored or printed
	// (sensitive variables, cache credentials): pass it as a secret.
	SecretEnv map[string]string
	// Privileged says the step needs a privileged environment (kiwi
	// prepare, non-jailed customize or SSH sessions); jailed customize
	// scripts and SSH sessions run unprivileged (Sandboxed).
	Privileged bool
	// Sandboxed says the step, not privileged, runs jailed scripts or SSH
	// sessions in imsbuild's hardened sandbox, which then sets itself up
	// in a user namespace: its environment must let a root process make
	// one and mount in it (Kubernetes: seccomp and AppArmor Unconfined),
	// and its pids limit is the environment's (docs/security.md).
	Sandboxed bool
	// Arch is the architecture the step builds for (the image's: x86_64,
	// aarch64). An executor with nodes of it runs the step there natively
	// (Kubernetes: nodeSelector kubernetes.io/arch=arm64 for aarch64,
	// amd64 for x86_64); otherwise on any node, where imsbuild runs the
	// step's programs under qemu user-mode emulation (builders/binfmt).
	// The key of an emulated step names the emulator and a native one's
	// does not, so the engine keys the step for where it will run
	// (ArchRouter). "" leaves the choice of node to the executor.
	Arch string
	// Log receives the step's output as it runs.
	Log io.Writer
	// Started, when not nil, is called with the namespace and name of
	// what runs the step once the executor has created it or attached to
	// it (Kubernetes: the Job), so that the caller can name it (imsbuild
	// serve's kubernetes_job). It is called again when that is created
	// anew (a Job deleted under a running step). An executor without
	// such names (a local process) does not call it.
	Started func(namespace, name string)
	// Stored, when not nil, reports whether the step's result is in the
	// remote cache under Key. An executor that sees the step say so on
	// its output (StoredMarker) asks Stored and, on true, returns without
	// waiting for the step's process to be seen ending; on false the line
	// was not the step's own, and Run goes on waiting.
	Stored func(ctx context.Context) bool
	// Waiting, when not nil, says the step may open an SSH environment
	// (an interactive image, a debug shell on failure): the executor must be an SSHExecutor, which lets
	// the step listen where people can be let in (SSHListenEnv) and
	// calls Waiting with the address they use once the environment
	// waits. It may be called again when the step runs again (a retry).
	Waiting func(SSHEndpoint)
}
