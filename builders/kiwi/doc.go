// Package kiwi is the recipe → image builder: it runs an IMS "create" job
// the way IMS does, split into building blocks that builders/steps composes
// into the steps the engine caches separately.
//
//   - FetchRecipe puts a recipe (a kiwi-ng description) into a work dir, from
//     a directory or an IMS recipe archive (.tgz), refusing entries that
//     would escape it.
//   - Render fills the IMS template_dictionary into the description file.
//   - Repositories, WaitForRepos and RepoDigests read the repositories a
//     description uses, wait until they answer (IMS wait-for-repos) and digest
//     their metadata for track_repos cache keys.
//   - InjectCACerts makes the image trust site CA certificates (IMS
//     build-ca-rpm).
//   - Prepare runs `kiwi-ng system prepare` in private mount, pid, ipc and
//     uts namespaces, so that no mount or process of kiwi outlives the step,
//     even when it is cancelled. builders/steps packs the prepared root
//     (with builders/pack) instead of running `kiwi-ng system build`. With
//     Options.BootstrapCache, a debootstrap shim keeps and restores the
//     bootstrap root of apt recipes (see bootstrap.go). Every dpkg kiwi runs
//     skips its fsyncs (DPKG_FORCE=…,unsafe-io): the root is throw-away
//     until packed.
//
// ToolVersion reports the kiwi-ng version, part of the prepare cache key.
package kiwi
