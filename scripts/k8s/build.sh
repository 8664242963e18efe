#!/bin/sh
# build.sh — build the Kubernetes binaries the cluster tests run (kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl) from the module
# k8s.io/kubernetes through the Go module proxy, once per machine and version.
#
# k8s.io/kubernetes ignores its own replace directives when used as a
# dependency, so a wrapper module (generated under the output directory, not in
# the project's go.mod) requires it and pins every staging module to the
# matching v0.x release. The binaries go to $K8S_DIR/bin, each renamed into
# place once built whole; only the missing ones are built, so that a version's
# directory gains a newly needed one without the others being built again, and
# a second run is a no-op. It runs niced on one CPU: the build takes 15-25 minutes on a
# shared 2-core machine, ~3 GB of Go build cache.
set -eu
. "$(dirname "$0")/env.sh"

staging="api apiextensions-apiserver apimachinery apiserver cli-runtime client-go
cloud-provider cluster-bootstrap code-generator component-base component-helpers
controller-manager cri-api cri-client csi-translation-lib dynamic-resource-allocation
endpointslice externaljwt kms kube-aggregator kube-controller-manager kube-proxy
kube-scheduler kubectl kubelet metrics mount-utils pod-security-admission
sample-apiserver sample-cli-plugin sample-controller"
cmds="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl"
staging_version="v0.${K8S_VERSION#v1.}"

missing=""
for c in $cmds; do
	[ -x "$K8S_DIR/bin/$c" ] || missing="$missing $c"
done
[ -n "$missing" ] || exit 0

mod="$K8S_DIR/src"
rm -rf "$mod"
mkdir -p "$mod" "$K8S_DIR/bin"
{
	echo "module imsbuild.local/k8s"
	echo
	echo "go 1.24"
	echo
	echo "require k8s.io/kubernetes $K8S_VERSION"
	echo
	for c in $cmds; do echo "tool k8s.io/kubernetes/cmd/$c"; done
	echo
	for s in $staging; do echo "replace k8s.io/$s => k8s.io/$s $staging_version"; done
} >"$mod/go.mod"

cd "$mod"
export GOFLAGS=-mod=mod CGO_ENABLED=0 GOMAXPROCS="${GOMAXPROCS:-1}"
nice -n "${K8S_BUILD_NICE:-10}" go mod tidy
pkgs=""
for c in $missing; do pkgs="$pkgs k8s.io/kubernetes/cmd/$c"; done
# shellcheck disable=SC2086 # pkgs is a list of package paths
tmp="$K8S_DIR/bin/.building"
rm -rf "$tmp"
mkdir -p "$tmp"
nice -n "${K8S_BUILD_NICE:-10}" go build -p "${K8S_BUILD_P:-1}" -trimpath \
	-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION" \
	-o "$tmp/" $pkgs
for c in $missing; do mv "$tmp/$c" "$K8S_DIR/bin/$c"; done
rmdir "$tmp"
