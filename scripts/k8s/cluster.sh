#!/bin/sh
# cluster.sh up|down|status — a single-node Kubernetes cluster on this machine
# for the Kubernetes executor tests (and developers: `make k8s-up`).
#
# Everything listens on 127.0.0.1 on free ports: its own containerd (own root,
# state and socket), etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, a kubelet and kube-proxy (iptables mode: Services reach their
# pods, e.g. the SSH environment of an interactive step). Pods get a CNI bridge with no gateway, no
# routes and no masquerade, so they cannot send traffic off the node; pods that
# need the host's loopback services use hostNetwork. Images are never pulled:
# they are OCI archives imported with `ctr -n k8s.io images import` (pods use
# imagePullPolicy: Never). The facts behind the knobs are in the shared k8s
# notes: cgroup v1 and containerd 1.6 need Kubernetes 1.34; no
# CAP_SYS_RESOURCE needs restrict_oom_score_adj.
#
# up is idempotent (a running cluster is left alone, but a part it lacks that
# this script starts, kube-proxy, is started), writes the admin
# kubeconfig to $K8S_STATE/admin.kubeconfig and waits, bounded, for the node
# to be Ready, printing the last log lines of every part when it is not.
# down stops everything and undoes what the kubelet and kube-proxy did to the
# host (sysctls, iptables chains, kubepods cgroups, mounts, network namespaces,
# the bridge), then checks that nothing is left and fails if something is.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/env.sh"
S="${K8S_STATE:-/var/lib/imsbuild-k8s/cluster}"
BIN="$K8S_DIR/bin"
BRIDGE=imsk8s0
POD_CIDR=10.213.0.0/24
SOCK="$S/containerd/containerd.sock"
PAUSE_REF=imsbuild.local/pause:1
READY_TIMEOUT="${K8S_READY_TIMEOUT:-180}"
# The sysctls the kubelet (protectKernelDefaults: false) and the CNI plugins
# may change; up saves them, down writes them back.
SYSCTLS="vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward net.ipv4.conf.all.route_localnet"

kubectl() { "$BIN/kubectl" --kubeconfig "$S/admin.kubeconfig" "$@"; }
log() { echo "k8s-cluster: $*" >&2; }

alive() { # NAME: the part's recorded pid is running
	[ -f "$S/pids/$1" ] && kill -0 "$(cat "$S/pids/$1")" 2>/dev/null
}

start() { # NAME CMD...: start a part in its own session, log to logs/NAME.log
	name=$1
	shift
	setsid "$@" >"$S/logs/$name.log" 2>&1 </dev/null 9>&- &
	echo $! >"$S/pids/$name"
}

stop() { # NAME: TERM, then KILL after 10 s
	[ -f "$S/pids/$1" ] || return 0
	pid=$(cat "$S/pids/$1")
	if kill -TERM "$pid" 2>/dev/null; then
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$S/pids/$1"
}

freeport() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

diagnose() {
	for f in "$S"/logs/*.log; do
		echo "--- $(basename "$f") (last lines)" >&2
		tail -n 12 "$f" >&2
	done
}

waitfor() { # SECONDS WHAT CMD...: run CMD until it succeeds
	secs=$1 what=$2
	shift 2
	end=$(($(date +%s) + secs))
	until "$@" >/dev/null 2>&1; do
		if [ "$(date +%s)" -ge "$end" ]; then
			log "timed out after ${secs}s waiting for $what"
			diagnose
			return 1
		fi
		sleep 0.5
	done
}

# cert NAME SUBJECT [SAN]: an EC key and a certificate signed by the CA.
cert() {
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$S/pki/$1.key" -out "$S/pki/$1.csr" -subj "$2" 2>/dev/null
	printf 'extendedKeyUsage=serverAuth,clientAuth\n%s\n' "${3:+subjectAltName=$3}" >"$S/pki/$1.ext"
	openssl x509 -req -in "$S/pki/$1.csr" -CA "$S/pki/ca.crt" -CAkey "$S/pki/ca.key" \
		-CAcreateserial -days 30 -extfile "$S/pki/$1.ext" -out "$S/pki/$1.crt" 2>/dev/null
}

# kubeconfig NAME CERT: a kubeconfig for the API server with a client cert.
kubeconfig() {
	cat >"$S/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: imsbuild
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 "$S/pki/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 "$S/pki/$2.crt")
    client-key-data: $(base64 -w0 "$S/pki/$2.key")
contexts:
- name: imsbuild
  context: {cluster: imsbuild, user: $2}
current-context: imsbuild
EOF
	chmod 600 "$S/$1.kubeconfig"
}

save_host() {
	mkdir -p "$S/saved"
	for k in $SYSCTLS; do
		v=$(sysctl -n "$k" 2>/dev/null) && printf '%s\t%s\n' "$k" "$v"
	done >"$S/saved/sysctl"
	ls /run/netns 2>/dev/null | sort >"$S/saved/netns" || true
	for d in /var/lib/kubelet /var/log/pods /var/log/containers; do
		[ -e "$d" ] && echo "$d"
	done >"$S/saved/dirs" || true
}

# start_kube_proxy starts kube-proxy in iptables mode for the node: metrics and
# healthz on loopback, and no conntrack tuning (maxPerCore 0, timeouts 0: it
# would write sysctls that need CAP_SYS_RESOURCE), no NodePorts on loopback (no
# route_localnet). Its rules go at down (kube-proxy --cleanup, then every KUBE-
# chain).
start_kube_proxy() {
	node=$(sed -n 's/^NODE=//p' "$S/ports")
	PROXY_HZ=$(freeport) PROXY_METRICS=$(freeport)
	cat >"$S/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $S/admin.kubeconfig
hostnameOverride: $node
mode: iptables
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:$PROXY_HZ
metricsBindAddress: 127.0.0.1:$PROXY_METRICS
clusterCIDR: $POD_CIDR
nodePortAddresses: [primary]
iptables:
  localhostNodePorts: false
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
  udpTimeout: 0s
  udpStreamTimeout: 0s
EOF
	start kube-proxy "$BIN/kube-proxy" --config "$S/kube-proxy.yaml"
	waitfor 60 kube-proxy curl -sf "http://127.0.0.1:$PROXY_HZ/healthz"
	log "kube-proxy up"
}

up() {
	if alive kubelet && alive kube-apiserver; then
		if ! alive kube-proxy; then
			[ -x "$BIN/kube-proxy" ] || {
				log "$BIN/kube-proxy missing: run scripts/k8s/build.sh (make setup-tools)"
				exit 1
			}
			start_kube_proxy
		fi
		log "already up ($S/admin.kubeconfig)"
		return 0
	fi
	[ -d "$S" ] && down
	for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
		[ -x "$BIN/$b" ] || {
			log "$BIN/$b missing: run scripts/k8s/build.sh (make setup-tools)"
			exit 1
		}
	done
	mkdir -p "$S/pids" "$S/logs" "$S/pki" "$S/cni/net.d" "$S/containerd"
	save_host
	node_ip=$(ip -4 -o addr show dev "${K8S_NODE_IFACE:-eth0}" | awk '{print $4}' | cut -d/ -f1 | head -n1)
	[ -n "$node_ip" ] || node_ip=$(ip -4 -o route get 192.0.2.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
	# The API server reaches the kubelet by node name, which must resolve to
	# the loopback address the kubelet listens on.
	node=$(hostname)
	case "$(getent hosts "$node" | awk '{print $1}' | head -n1)" in
	127.*) ;;
	*) node=localhost ;;
	esac
	ETCD_PORT=$(freeport) ETCD_PEER=$(freeport) API_PORT=$(freeport)
	KUBELET_PORT=$(freeport) KUBELET_HZ=$(freeport) CM_PORT=$(freeport) SCHED_PORT=$(freeport)
	printf 'API_PORT=%s\nNODE=%s\n' "$API_PORT" "$node" >"$S/ports"

	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
		-keyout "$S/pki/ca.key" -out "$S/pki/ca.crt" -subj /CN=imsbuild-k8s-ca 2>/dev/null
	cert apiserver /CN=kube-apiserver "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes.default.svc"
	cert admin "/O=system:masters/CN=imsbuild-admin"
	cert node "/O=system:nodes/CN=system:node:$node"
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$S/pki/sa.key" 2>/dev/null
	openssl pkey -in "$S/pki/sa.key" -pubout -out "$S/pki/sa.pub"
	kubeconfig admin admin
	kubeconfig kubelet node

	cat >"$S/containerd/config.toml" <<EOF
version = 2
root = "$S/containerd/root"
state = "$S/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$S/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_REF"
  restrict_oom_score_adj = true
  # Pod network namespaces under our state dir, not /run/netns, so that
  # down finds every one it must unmount.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$S/cni/net.d"
EOF
	cat >"$S/cni/net.d/10-imsbuild.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "imsbuild", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": false, "ipMasq": false,
   "ipam": {"type": "host-local", "dataDir": "$S/cni/ipam", "ranges": [[{"subnet": "$POD_CIDR"}]]}},
  {"type": "loopback"}
]}
EOF
	start containerd containerd --config "$S/containerd/config.toml"
	waitfor 30 containerd ctr --address "$SOCK" version
	if [ ! -f "$K8S_DIR/pause.tar" ]; then
		CGO_ENABLED=0 go build -trimpath -o "$S/pause" "$here/pause"
		(cd "$here/../.." && go run ./cmd/imsbuild-image files -ref "$PAUSE_REF" -entrypoint /pause "$K8S_DIR/pause.tar" "$S/pause:pause") >/dev/null
	fi
	ctr --address "$SOCK" -n k8s.io images import "$K8S_DIR/pause.tar" >/dev/null

	start etcd etcd --name imsbuild --data-dir "$S/etcd" \
		--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
		--listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
		--initial-cluster "imsbuild=http://127.0.0.1:$ETCD_PEER" --listen-metrics-urls "" --logger zap --log-level warn
	waitfor 30 etcd etcdctl --endpoints "http://127.0.0.1:$ETCD_PORT" endpoint health

	start kube-apiserver "$BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
		--bind-address 127.0.0.1 --secure-port "$API_PORT" --advertise-address "$node_ip" \
		--service-cluster-ip-range 10.96.0.0/24 --allow-privileged=true \
		--authorization-mode Node,RBAC --client-ca-file "$S/pki/ca.crt" \
		--tls-cert-file "$S/pki/apiserver.crt" --tls-private-key-file "$S/pki/apiserver.key" \
		--kubelet-client-certificate "$S/pki/admin.crt" --kubelet-client-key "$S/pki/admin.key" \
		--kubelet-preferred-address-types Hostname,InternalIP \
		--service-account-issuer https://kubernetes.default.svc \
		--service-account-key-file "$S/pki/sa.pub" --service-account-signing-key-file "$S/pki/sa.key" \
		--profiling=false
	waitfor 90 kube-apiserver kubectl get --raw /readyz

	start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig "$S/admin.kubeconfig" \
		--bind-address 127.0.0.1 --secure-port "$CM_PORT" --leader-elect=false \
		--service-account-private-key-file "$S/pki/sa.key" --root-ca-file "$S/pki/ca.crt" \
		--use-service-account-credentials=true \
		--cluster-signing-cert-file "$S/pki/ca.crt" --cluster-signing-key-file "$S/pki/ca.key" \
		--profiling=false
	start kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$S/admin.kubeconfig" \
		--bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --leader-elect=false --profiling=false

	cat >"$S/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HZ
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
protectKernelDefaults: false
containerRuntimeEndpoint: unix://$SOCK
podLogsDir: $S/pod-logs
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $S/pki/ca.crt}
authorization: {mode: AlwaysAllow}
# A nearly full disk must not taint the node or evict the test pods, and the
# imported images (never pullable again) must not be garbage collected.
evictionHard: {memory.available: 1Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
# A jailed customize runs in an unprivileged pod, where the sandbox cannot make
# a pids cgroup of its own: the pod's limit bounds a fork bomb (the tests try).
podPidsLimit: 1024
EOF
	start kubelet "$BIN/kubelet" --config "$S/kubelet.yaml" --kubeconfig "$S/kubelet.kubeconfig" \
		--root-dir "$S/kubelet" --cert-dir "$S/kubelet/pki" --hostname-override "$node" --node-ip "$node_ip"
	waitfor "$READY_TIMEOUT" "node $node Ready" \
		kubectl wait --for=condition=Ready "node/$node" --timeout=5s
	# Pods need the default namespace's service account before they can be created.
	waitfor 60 "default service account" kubectl -n default get serviceaccount default
	start_kube_proxy
	log "up: node $node Ready; KUBECONFIG=$S/admin.kubeconfig"
}

# pids_of_cgroups prints the processes in the kubepods cgroups (every v1
# hierarchy) — the pods' containers.
kubepods_dirs() {
	for h in /sys/fs/cgroup/*/; do
		[ -d "${h}kubepods" ] && find "${h}kubepods" -depth -type d
	done
	return 0
}

# shims prints the containerd shims of this cluster's containerd (found by
# its socket in their command line).
shims() {
	for p in /proc/[0-9]*; do
		{ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -q -- "-address $SOCK " && echo "${p#/proc/}"
	done
	return 0
}

# leftovers prints every process whose command line names the cluster's
# state dir or binaries: a part whose pid file was lost, a shim, a container
# runtime helper.
leftovers() {
	for p in /proc/[0-9]*; do
		{ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -q -e "$S/" -e "$BIN/" && echo "${p#/proc/}"
	done
	return 0
}

our_mounts() { # mount points under $S and new network namespaces, deepest first
	{
		awk -v s="$S/" 'index($5, s) == 1 {print $5}' /proc/self/mountinfo
		if [ -f "$S/saved/netns" ]; then
			for n in $(ls /run/netns 2>/dev/null | sort | comm -23 - "$S/saved/netns"); do
				echo "/run/netns/$n"
			done
		fi
	} | awk '{print length($0) "\t" $0}' | sort -rn | cut -f2-
}

down() {
	[ -d "$S" ] || return 0
	# Let the kubelet stop the pods (containers, sandboxes, their network).
	if alive kube-apiserver && alive kubelet; then
		kubectl delete pods --all --all-namespaces --grace-period=1 --wait=true --timeout=30s >/dev/null 2>&1 || true
	fi
	for p in kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver etcd; do stop $p; done
	# kube-proxy's rules (delete_kube_chains below removes any chain left).
	if [ -x "$BIN/kube-proxy" ]; then
		"$BIN/kube-proxy" --cleanup >"$S/logs/kube-proxy-cleanup.log" 2>&1 || true
	fi
	# What the kubelet could not stop: kill the containers by cgroup, then
	# the shims, then containerd.
	for d in $(kubepods_dirs); do
		[ -f "$d/cgroup.procs" ] && xargs -r kill -KILL <"$d/cgroup.procs" 2>/dev/null || true
	done
	stop containerd
	for pid in $(shims) $(leftovers); do kill -KILL "$pid" 2>/dev/null || true; done
	sleep 0.2
	for m in $(our_mounts); do umount -l "$m" 2>/dev/null || true; done
	for n in $(ls /run/netns 2>/dev/null | sort | comm -23 - "$S/saved/netns" 2>/dev/null); do rm -f "/run/netns/$n"; done
	# A killed process leaves its cgroup only once reaped: retry for a while.
	i=0
	while [ -n "$(kubepods_dirs)" ] && [ $i -lt 50 ]; do
		for d in $(kubepods_dirs); do rmdir "$d" 2>/dev/null || true; done
		[ -z "$(kubepods_dirs)" ] || sleep 0.1
		i=$((i + 1))
	done
	ip link del "$BRIDGE" 2>/dev/null || true
	if [ -f "$S/saved/sysctl" ]; then
		while IFS="	" read -r k v; do
			[ "$(sysctl -n "$k" 2>/dev/null)" = "$v" ] || sysctl -q -w "$k=$v" >/dev/null 2>&1 || true
		done <"$S/saved/sysctl"
	fi
	delete_kube_chains
	for d in /var/lib/kubelet /var/log/pods /var/log/containers; do
		grep -qx "$d" "$S/saved/dirs" 2>/dev/null || rm -rf "$d"
	done
	find /var/log/containers -type l -lname "$S/*" -delete 2>/dev/null || true
	check_clean || return 1
	# Keep the logs for a post-mortem; everything else goes.
	find "$S" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +
	log "down"
}

# delete_kube_chains removes the KUBE-* chains the kubelet added (and the
# rules jumping to them) from every table, IPv4 and IPv6, leaving the rest.
delete_kube_chains() {
	for ipt in iptables ip6tables; do
		command -v "$ipt-save" >/dev/null || continue
		for t in filter nat mangle; do
			"$ipt-save" -t "$t" 2>/dev/null | grep -q KUBE- || continue
			"$ipt-save" -t "$t" | grep -v -- KUBE- | "$ipt-restore" -T "$t"
		done
	done
}

# check_clean fails when anything of the cluster is left on the host.
check_clean() {
	bad=""
	for f in "$S"/pids/*; do [ -f "$f" ] && bad="$bad process:$(basename "$f")"; done
	[ -z "$(leftovers)" ] || bad="$bad processes:$(leftovers | tr '\n' ,)"
	[ -z "$(our_mounts)" ] || bad="$bad mounts:$(our_mounts | tr '\n' ,)"
	[ -z "$(kubepods_dirs)" ] || bad="$bad cgroups:$(kubepods_dirs | head -n3 | tr '\n' ,)"
	for ipt in iptables ip6tables; do
		command -v "$ipt-save" >/dev/null || continue
		"$ipt-save" 2>/dev/null | grep -q KUBE- && bad="$bad $ipt:KUBE-chains"
	done
	ip link show "$BRIDGE" >/dev/null 2>&1 && bad="$bad bridge:$BRIDGE"
	if [ -f "$S/saved/sysctl" ]; then
		while IFS="	" read -r k v; do
			[ "$(sysctl -n "$k" 2>/dev/null)" = "$v" ] || bad="$bad sysctl:$k"
		done <"$S/saved/sysctl"
	fi
	if [ -n "$bad" ]; then
		log "down left behind:$bad"
		return 1
	fi
}

status() {
	for p in containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
		if alive $p; then echo "$p: running (pid $(cat "$S/pids/$p"))"; else echo "$p: stopped"; fi
	done
	if alive kube-apiserver; then
		kubectl get nodes
		echo "KUBECONFIG=$S/admin.kubeconfig"
	fi
}

# One cluster per machine: up and down of two callers (two test runs, a
# developer's make k8s-up) take turns instead of tearing each other down.
lock() {
	mkdir -p "$(dirname "$S")"
	exec 9>"$S.lock"
	flock -w 600 9
}

case "${1:-}" in
up)
	lock
	# A cluster that does not come up is taken down again (after the
	# diagnosis), so that a failed start leaves nothing running either.
	trap 'st=$?; [ $st -eq 0 ] || { log "up failed; stopping what started"; down || true; }' EXIT
	up
	;;
down)
	lock
	down
	;;
status) status ;;
*)
	echo "usage: $0 up|down|status" >&2
	exit 2
	;;
esac
