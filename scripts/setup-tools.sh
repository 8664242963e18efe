#!/bin/sh
# setup-tools.sh — install the Go-built tools the tests use (real S3 server,
# OCI client) into $(go env GOPATH)/bin, only those missing. Idempotent.
set -eu
bin="$(go env GOPATH)/bin"
need() { command -v "$1" >/dev/null 2>&1 || [ -x "$bin/$1" ]; }
need versitygw || go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
need crane || go install github.com/google/go-containerregistry/cmd/crane@v0.22.1
# cosign and oras check the signed provenance and the OCI referrers the way
# users do (tests of provenance/ and the OCI publisher).
need cosign || go install github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5
need oras || go install oras.land/oras/cmd/oras@v1.3.6
# The Kubernetes binaries of the cluster tests (once per machine and version,
# 15-25 minutes the first time; see scripts/k8s/build.sh).
"$(dirname "$0")/k8s/build.sh"
