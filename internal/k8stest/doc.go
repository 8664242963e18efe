// Package k8stest gives a test a namespace of its own in the real
// single-node Kubernetes cluster that `make test` starts around the
// Kubernetes tests (scripts/k8s/cluster.sh; `make k8s-up` for developers).
//
// Tests that need the cluster live in files with the build constraint
// `//go:build kubernetes` and are named TestKubernetes…; `make test` runs
// them in a second phase:
//
//	go test -tags kubernetes -run '^TestKubernetes' ./...
//
// with IMSBUILD_TEST_KUBECONFIG set to the cluster's admin kubeconfig (and
// IMSBUILD_TEST_BUILDER_IMAGE to bin/builder-image.tar). [Cluster] skips the
// test when the variable is unset, or fails it when IMSBUILD_TEST_REQUIRE
// names "kubernetes" (CI sets "all"). A separate phase, because the kubelet's
// mounts would disturb the tests that compare the host's mount table. To run
// them by hand: `make k8s-up`, then scripts/k8s/test.sh [-run …] (it uses the
// cluster already up and leaves it so), `make k8s-down` when done.
//
// The cluster pulls no images: a test loads OCI archives into the node's
// containerd with [Env.LoadImage] and its pods use imagePullPolicy: Never.
// Pods cannot send traffic off the node (a bridge with no gateway); a pod
// that must reach a server the test runs on 127.0.0.1 uses hostNetwork.
package k8stest
