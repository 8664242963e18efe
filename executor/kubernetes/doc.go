// Package kubernetes runs imsbuild steps as Kubernetes Jobs.
//
// Each Run creates one batch/v1 Job named after the step's cache key
// (imsbuild-<first 20 hex of the key>), so that two orchestrators that need
// the same key at once create one Job: the second gets AlreadyExists and
// attaches to the first's Job instead. The Job's pod runs `imsbuild` with
// the step's arguments in the builder image; the Job controller retries an
// evicted or killed pod up to Config.BackoffLimit times. Sensitive
// environment goes into a per-Job Secret owned by the Job (never into the
// Job's spec), and the service account token is not mounted: a step needs
// the remote cache, not the Kubernetes API.
//
// A step pod runs on nodes of its step's architecture (kubernetes.io/arch):
// an aarch64 step on an arm64 node when the cluster has one its pods may
// use, natively, else on an amd64 node under emulation; the Executor is an
// executor.ArchRouter, so that the engine keys the step for that node
// (arch.go).
//
// Jobs and pods are watched with one label-filtered SharedInformerFactory
// per Executor (no polling); each pod's log is followed into Step.Log,
// including the logs of retried pods. Cancelling a Run deletes the Job it
// created with foreground propagation and waits, bounded, until its pods
// are gone. A Job it attached to belongs to another build and is left alone.
package kubernetes
