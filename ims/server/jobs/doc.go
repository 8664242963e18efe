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
package jobs
