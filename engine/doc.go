// Package engine turns a spec.Config into a DAG of steps, computes their
// cache keys, plans (cached or build, and why) and runs them in topological
// order with bounded parallelism, reporting typed events.
//
// Steps are "image.<label>" (import, customize or kiwi, the last with a
// cached "image.<label>/prepare" sub-step) and "publish.<kind>.<name>".
// An image step is a builders/steps.Op: the op describes what decides its
// result (typed attributes, content digests of its inputs, tool versions)
// and builds it in an environment the engine gives it (a private work
// directory, the step's log, the blob store, the sandbox, the results it
// builds on). The engine keeps the rest: the graph, the key (the op's
// description plus builder version, cache salt and allowlisted
// environment, sensitive values sealed; canonical JSON kept for explain),
// the per-key lock, the action cache lookup and record (runCached),
// scheduling (-j, --keep-going, cancellation), SSH sessions, publishing and
// events.
//
// An image step's key holds its parent image's output digests (not its
// key), so a parent rebuilt byte-identical keeps its children cached.
//
// With Options.Signer, every image step, built or cached, then gets a
// signed SLSA provenance (provenance.go): its artifacts and SBOM as
// subjects, the build files and variables (sensitive ones redacted), its
// key preimage, and its resolved inputs by digest. The envelope is a blob
// of the store that publishers get as ims.ProvenanceFile; it is no part of
// the step's result, so the key changes no cache key, and a no-op build
// reuses the envelope it signed before. Cached finds it again for
// `imsbuild verify IMAGE`.
package engine
