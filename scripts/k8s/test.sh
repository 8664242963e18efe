#!/bin/sh
# test.sh [GO TEST FLAGS…] — start the test cluster, run the TestKubernetes…
# tests (build tag kubernetes) of every package against it, and stop it
# whatever happens. Stopping fails when it leaves anything behind, and so
# does this script.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
S="${K8S_STATE:-/var/lib/imsbuild-k8s/cluster}"
# A cluster already up (make k8s-up: one per machine, since the kubelet
# owns the root kubepods cgroups) is used and left up for whoever started it.
if "$here/cluster.sh" status | grep -q '^kubelet: running'; then
	echo "test.sh: using the cluster already up; it stays up" >&2
else
	trap 'rc=$?; "$here/cluster.sh" down || rc=1; exit $rc' EXIT
	trap 'exit 130' INT TERM
	"$here/cluster.sh" up
fi
cd "$here/../.."
# Only the packages holding such tests: compiling every test binary again
# would cost minutes for nothing.
pkgs=$(grep -rl --include='*_test.go' --exclude-dir=.git --exclude-dir=examples --exclude-dir=bin '^//go:build kubernetes' . | xargs -n1 dirname | sort -u)
[ -n "$pkgs" ] || { echo "no kubernetes tests found" >&2; exit 1; }
# shellcheck disable=SC2086 # pkgs is a list of directories
IMSBUILD_TEST_KUBECONFIG="$S/admin.kubeconfig" \
	IMSBUILD_TEST_BUILDER_IMAGE="${IMSBUILD_TEST_BUILDER_IMAGE:-$PWD/bin/builder-image.tar}" \
	go test -tags kubernetes -run '^TestKubernetes' "$@" $pkgs
