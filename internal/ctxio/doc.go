// Package ctxio stops reads once a context is done, so that a long copy,
// hash or extraction ends on cancellation between two reads.
package ctxio
