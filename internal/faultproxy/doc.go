// Package faultproxy is a test HTTP reverse proxy that injects faults
// between a client (S3, OCI, IMS) and a real server: dropped connections,
// 500 responses, delays and a connection reset in the middle of a request
// body. Faults are deterministic: they follow request counters, never
// randomness, so a failing test fails the same way every run.
package faultproxy
