// Package jobs runs IMS jobs on the engine for imsbuild serve: a Runner
// (the server's job hook) that admits jobs, runs at most MaxJobs at once
// while the others wait in status creating, cancels a job whose record is
// deleted, keeps each job's log, and fails the jobs a dead server left
// behind.
//
// A create job downloads a recipe archive from S3, renders it the IMS way
// and builds it with kiwi through the engine and the server's cache; a
// customize job (customize.go) opens IMS's SSH environment in an image.
// Both publish the result under a new image record whose id is its S3
// prefix, as IMS's job helper does.
//
// With Config.Executor (imsbuild serve --executor kubernetes) a create job
// without enable_debug builds its missing steps elsewhere, a Kubernetes
// Job each, through the remote cache Config.Remote: the job writes its
// build as build files (createhcl.go), which the remote step loads as
// `imsbuild build` does, and names the first Job in kubernetes_job. Jobs
// with an SSH environment still build in the server process.
package jobs
