// Package steps holds the step kinds the engine schedules, each an Op in
// BuildKit's spirit: Key describes what decides the step's result (typed
// attributes, content digests of its inputs, tool versions), Build makes
// the result in an Env the engine prepares (a private work directory, the
// step's log, the blob store, the sandbox, the results of the steps it
// builds on).
//
//   - Image is an image step: its root comes from an import (a tree, an
//     archive, a squashfs, or published artifacts), its parent's rootfs,
//     or its kiwi prepare; then CA certificates and customize blocks
//     (builders/customize), an optional SSH session, and pack
//     (builders/pack); the artifacts go to the store with their md5. A
//     customize runs on an overlay (builders/overlay) whose lower layer
//     is the parent's unpacked tree, kept in the local cache's tree cache
//     for the parent's next children (see lower.go for the fallbacks).
//   - Prepare is the kiwi prepare sub-step of a recipe image: the recipe
//     fetched, rendered and given its CA certificates, kiwi-ng system
//     prepare (builders/kiwi), the prepared root stored as a squashfs and
//     handed over to its image step.
//
// The engine keeps the graph, completes and hashes keys (builder version,
// salt, allowlisted environment, sensitive values sealed), locks them,
// looks them up, schedules steps and reports events. What the engine alone
// can do (SSH sessions that report events, remote imports through the
// publishers, the package cache) reaches an op as a function field.
package steps
