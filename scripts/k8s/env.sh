# env.sh — sourced by the cluster scripts: the Kubernetes version the tests run
# and where its binaries and the cluster's state live.
K8S_VERSION="${K8S_VERSION:-v1.34.4}"
K8S_DIR="${K8S_DIR:-/var/cache/imsbuild-k8s/$K8S_VERSION}"
