// Package engine turns a spec.Config into a DAG of steps, computes their
// cache keys, plans (cached or build, and why) and runs them in topological
// order with bounded parallelism, reporting typed events.
//
// Steps are "image.<label>" (import, customize or kiwi) and
// "publish.<kind>.<name>". An image step's key hashes its resolved
// attributes and the content digests of its inputs, including its parent
// image's output digests (not its key), so a parent rebuilt byte-identical
// keeps its children cached.
package engine
