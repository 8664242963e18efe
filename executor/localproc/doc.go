// Package localproc is the reference executor.Executor: it runs each step
// as a child process of this one (imsbuild itself, by default), with the
// step's environment and nothing else of ours but PATH, HOME and TMPDIR. Tests use it to
// run remote steps without a cluster; it also shows what an executor owes
// the engine: Args run to completion, SecretEnv only in the environment,
// output streamed to Log, cancellation stops the whole step.
package localproc
