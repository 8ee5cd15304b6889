# The test environment's worker node: containerd (+ runc, CNI bridge) and a kubelet that
# registers with the control plane, plus kube-scheduler, so pods and Deployments run for real.
# Sourced by hack/testenv.sh (component `node`); not a command of its own.
#
# It needs root on Linux. It changes the host while it runs, and node_teardown undoes each
# change (recorded in $dir/host-changes as it is made):
#   - the Service cluster IP of `kubernetes` (10.0.0.1) on `lo`, relayed to the apiserver by
#     hack/node/forward.py (kube-proxy's job; the apiserver listens on loopback only);
#   - a bridge `sastestenv0`, veth pairs and network namespaces /run/netns/cni-* for pods;
#   - net.ipv4.ip_forward (the bridge plugin's isGateway) and the kernel tunables the kubelet
#     sets (vm.overcommit_memory, vm.panic_on_oom, kernel.panic, kernel.panic_on_oops,
#     kernel.keys.root_maxkeys, kernel.keys.root_maxbytes): restored to their old values;
#   - /run/containerd (shim sockets, runc state), /var/log/containers (the kubelet's links),
#     /run/netns, when they did not exist before;
#   - mounts (Secret volumes, overlay root filesystems, netns) under those and the state dir;
#   - where iptables is installed, the kubelet's KUBE-* chains and the rules jumping to them.
# Everything else (containerd's root, pod logs, CNI IPAM) lives in the state directory, except
# containerd's socket and the kubelet's root dir, in /var/lib/sas-operator-testenv-node
# (socket paths must be short), removed on teardown. One node per machine: ports 10250/10248,
# the bridge and the cluster IP are the host's; /run/sas-operator-testenv-node names the
# state dir of the one that runs.
#
# Exposure: the kubelet listens on the node IP but accepts only client certificates from the
# control plane's own CA; the apiserver relay admits only pods' and loopback addresses.

NODE_LOCK=/run/sas-operator-testenv-node
# containerd's sockets and the kubelet's root dir (it holds sockets too): a unix socket path
# has at most 104 bytes, too few under a deep target directory. Removed on teardown.
NODE_HOST_DIR=/var/lib/sas-operator-testenv-node
NODE_BRIDGE=sastestenv0
NODE_POD_SUBNET=10.244.0.0/24
# First address of the control plane's --service-cluster-ip-range: the `kubernetes` Service.
NODE_SERVICE_IP=10.0.0.1
NODE_SYSCTLS=(net.ipv4.ip_forward vm.overcommit_memory vm.panic_on_oom kernel.panic
  kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

# Why the node cannot run here, or nothing when it can.
node_unsupported_reason() {
  [[ "$(uname -s)" == Linux ]] || { echo "the worker node needs Linux (this is $(uname -s))"; return; }
  (( EUID == 0 )) || { echo "the worker node needs root (containerd, network namespaces, mounts)"; return; }
  command -v ip >/dev/null || { echo "the worker node needs the ip command (apt-get install iproute2)"; return; }
  command -v python3 >/dev/null || { echo "the worker node needs python3 (its apiserver relay)"; return; }
}

all_alive() {
  local pid name
  while read -r pid name; do alive "$pid" || return 1; done <"$1"
}

record_change() { local dir="$1"; shift; echo "$*" >>"$dir/host-changes"; }

start_node_once() {
  local dir="$1" cp_env="$2" parts images node_ip sock
  parts="$(node_parts_dir)"
  images="$("$HACK_DIR/node-images.sh")" || return 1
  # shellcheck disable=SC1091
  source "$images/images.env"
  # shellcheck disable=SC1090
  source "$cp_env"
  node_ip="$(ip -4 -o addr show scope global | awk -v bridge="$NODE_BRIDGE" '$2 != "lo" && $2 != bridge { split($4, a, "/"); print a[1]; exit }')"
  [[ -n "$node_ip" ]] || { log "node: no global IPv4 address for --node-ip (the kubelet refuses loopback)"; return 1; }
  : >"$dir/pids"
  : >"$dir/host-changes"
  mkdir -p "$dir/containerd" "$dir/pod-logs" "$dir/cni/conf" "$dir/cni/ipam" "$dir/volume-plugins"
  sock="$NODE_HOST_DIR/containerd.sock"

  # Host state this run may change, recorded before it changes.
  local name
  for name in "${NODE_SYSCTLS[@]}"; do
    record_change "$dir" "sysctl $name $(sysctl -n "$name")"
  done
  [[ -e /run/containerd ]] || record_change "$dir" "created /run/containerd"
  [[ -e /var/log/containers ]] || record_change "$dir" "created /var/log/containers"
  [[ -e /run/netns ]] || record_change "$dir" "created /run/netns"
  rm -rf "$NODE_HOST_DIR" && mkdir -m 700 "$NODE_HOST_DIR" "$NODE_HOST_DIR/kubelet"
  ls /run/netns 2>/dev/null | sed 's/^/netns-before /' >>"$dir/host-changes" || true
  # Where iptables is installed the kubelet adds its chains (KUBE-FIREWALL, canaries, hint).
  local table
  for table in filter nat mangle; do
    if command -v iptables >/dev/null; then
      iptables -t "$table" -S 2>/dev/null | awk -v t="$table" '$1 == "-N" { print "chain-before " t " " $2 }' >>"$dir/host-changes" || true
    fi
  done

  cat >"$dir/containerd/config.toml" <<EOF
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
[grpc]
  address = "$sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$NODE_PAUSE_IMAGE"
  # root here may lack CAP_SYS_RESOURCE: runc cannot lower oom_score_adj below its own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$parts/usr/sbin/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$parts/usr/lib/cni"
    conf_dir = "$dir/cni/conf"
EOF
  cat >"$dir/cni/conf/10-testenv.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "sas-testenv",
  "plugins": [{
    "type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "ipMasq": false,
    "ipam": {"type": "host-local", "ranges": [[{"subnet": "$NODE_POD_SUBNET"}]],
             "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$dir/cni/ipam"}
  }]
}
EOF
  record_change "$dir" "bridge $NODE_BRIDGE"

  # The shim and runc are found on PATH.
  PATH="$parts/usr/bin:$parts/usr/sbin:$PATH" start_daemon "$dir" containerd \
    "$parts/usr/bin/containerd" --config "$dir/containerd/config.toml"
  wait_for "$dir" "containerd" "'$parts/usr/bin/ctr' --address '$sock' version" || return 1
  local image
  for image in "$images/pause.tar" "$images/consumer.tar"; do
    "$parts/usr/bin/ctr" --address "$sock" -n k8s.io images import "$image" >/dev/null \
      || { log "node: ctr images import $image failed"; return 1; }
  done

  # The `kubernetes` Service's cluster IP, relayed to the apiserver on loopback.
  if ! ip -4 addr show dev lo | grep -q " $NODE_SERVICE_IP/32"; then
    ip addr add "$NODE_SERVICE_IP/32" dev lo || return 1
    record_change "$dir" "address $NODE_SERVICE_IP/32 lo"
  fi
  start_daemon "$dir" forward.py python3 "$HACK_DIR/node/forward.py" \
    "$NODE_SERVICE_IP" 443 127.0.0.1 "$TESTENV_APISERVER_PORT" "$NODE_POD_SUBNET" 127.0.0.0/8 "$NODE_SERVICE_IP/32"
  # The apiserver's certificate names the cluster IP, so pods verify it as they would anywhere.
  wait_for "$dir" "the apiserver relay on $NODE_SERVICE_IP:443" \
    "curl -fsS --cacert '$TESTENV_APISERVER_CA' https://$NODE_SERVICE_IP/livez" || return 1

  cat >"$dir/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $node_ip
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $TESTENV_KUBELET_CLIENT_CA}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$sock
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
podLogsDir: $dir/pod-logs
volumePluginDir: $dir/volume-plugins
makeIPTablesUtilChains: false
# Never garbage-collect the imported images (there is no registry to pull them back from),
# and do not evict pods because a shared build machine's disk is fuller than a node's.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "1Mi", nodefs.available: "100Mi", imagefs.available: "100Mi", nodefs.inodesFree: "1%"}
EOF
  start_daemon "$dir" kubelet "$KUBE_BIN/kubelet" --config "$dir/kubelet-config.yaml" \
    --kubeconfig "$TESTENV_NODE_KUBECONFIG" --root-dir "$NODE_HOST_DIR/kubelet" --cert-dir "$NODE_HOST_DIR/kubelet/pki" \
    --hostname-override "$NODE_NAME" --node-ip "$node_ip" --v 1
  start_daemon "$dir" kube-scheduler "$KUBE_BIN/kube-scheduler" --kubeconfig "$TESTENV_NODE_KUBECONFIG" \
    --leader-elect=false --secure-port 0
  wait_for "$dir" "node $NODE_NAME Ready and untainted" \
    "'$KUBECTL' --kubeconfig '$KUBECONFIG' get node '$NODE_NAME' -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status} {.spec.taints}' | grep -qx 'True '" \
    || return 1

  cat >"$dir/env" <<EOF
TESTENV_NODE_NAME=$NODE_NAME
TESTENV_NODE_IP=$node_ip
TESTENV_CONTAINERD_ADDRESS=$sock
TESTENV_CTR=$parts/usr/bin/ctr
TESTENV_CONSUMER_IMAGE=$NODE_CONSUMER_IMAGE
TESTENV_NODE_STATE=$dir
EOF
}

# TESTENV_CONTROL_PLANE_ENV: the env file of the control plane to join (default: this state's).
start_node() {
  local dir="$STATE/node" cp_env="${TESTENV_CONTROL_PLANE_ENV:-$STATE/control-plane/env}" reason
  reason="$(node_unsupported_reason)"
  [[ -z "$reason" ]] || die "$reason. Everything else runs without it: 'make test' runs the other test binaries and says so."
  [[ -f "$cp_env" ]] || die "node: no control plane to join ($cp_env); start control-plane first"
  need "$(node_parts_dir)/usr/bin/containerd" "containerd $CONTAINERD_DEBIAN_VERSION"
  need "$KUBE_BIN/kubelet" "kubelet $K8S_VERSION"
  need "$KUBE_BIN/kube-scheduler" "kube-scheduler $K8S_VERSION"
  # One node per machine. A node whose harness died leaves the lock behind: take it over
  # after undoing what it changed.
  exec 8>>"$NODE_LOCK.flock"
  flock -w 60 8 || die "node: another node is starting on this machine"
  if [[ -f "$NODE_LOCK" ]]; then
    local other
    other="$(cat "$NODE_LOCK")"
    if [[ "$other" != "$dir" && -d "$other" ]]; then
      if [[ -f "$other/pids" ]] && all_alive "$other/pids"; then
        die "node: a node from $other is running on this machine; stop it first (make testenv-down)"
      fi
      log "node: undoing the leftovers of a node that was not stopped ($other)"
      node_teardown_locked "$other"
      rm -rf "$other"
    fi
  fi
  rm -rf "$dir" && mkdir -p "$dir"
  echo "$dir" >"$NODE_LOCK"
  flock -u 8
  if ! start_node_once "$dir" "$cp_env"; then
    local log_file
    for log_file in "$dir"/*.log; do
      [[ -f "$log_file" ]] || continue
      log "node: last lines of $(basename "$log_file"):"
      grep -v '^\s*$' "$log_file" | tail -n 15 >&2
    done
    node_teardown "$dir"
    rm -rf "$dir"
    die "node did not start (logs were printed above)"
  fi
}

# Undoes everything start_node changed on the host. Works without the apiserver (the
# harness may stop the control plane first) and after a crash (reads $dir/host-changes).
# Holds the node lock, so a node starting meanwhile waits until the host is clean.
node_teardown() {
  exec 9>>"$NODE_LOCK.flock"
  flock -w 120 9 || log "node: teardown proceeds without the node lock"
  node_teardown_locked "$1"
  flock -u 9
  exec 9>&-
}

node_teardown_locked() {
  local dir="$1" parts sock pid name
  [[ -f "$dir/host-changes" ]] || return 0
  # The host's node is another one (this state is stale): leave the host alone.
  if [[ -f "$NODE_LOCK" && "$(cat "$NODE_LOCK")" != "$dir" ]] && [[ -f "$(cat "$NODE_LOCK")/pids" ]] \
    && all_alive "$(cat "$NODE_LOCK")/pids"; then
    log "node: $(cat "$NODE_LOCK") is the running node; only removing $dir"
    rm -f "$dir/host-changes"
    return 0
  fi
  parts="$(node_parts_dir)"
  sock="$NODE_HOST_DIR/containerd.sock"
  # The kubelet and scheduler first, so nothing restarts containers.
  if [[ -f "$dir/pids" ]]; then
    while read -r pid name; do
      if [[ "$name" == kubelet || "$name" == kube-scheduler ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
    done <"$dir/pids"
  fi
  # Every container's processes, then the shims (they outlive containerd otherwise).
  if [[ -S "$sock" ]]; then
    local task
    for task in $("$parts/usr/bin/ctr" --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
      "$parts/usr/bin/ctr" --address "$sock" -n k8s.io tasks kill -a -s SIGKILL "$task" >/dev/null 2>&1 || true
    done
  fi
  for pid in $(pgrep -f -- "-address $sock" 2>/dev/null); do
    # A shim's container processes are its children.
    pkill -KILL -P "$pid" 2>/dev/null || true
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [[ -f "$dir/pids" ]]; then
    while read -r pid name; do
      if grep -qa -- "$name" "/proc/$pid/cmdline" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    done <"$dir/pids"
  fi
  sleep 0.3
  # Network namespaces made during this run (their veths go with them), the bridge.
  local ns
  for ns in $(ls /run/netns 2>/dev/null); do
    grep -qxF "netns-before $ns" "$dir/host-changes" && continue
    [[ "$ns" == cni-* ]] || continue
    umount "/run/netns/$ns" 2>/dev/null || true
    rm -f "/run/netns/$ns"
  done
  # iptables chains the kubelet added, and the rules that jump to them (best effort).
  local table chain rule
  if command -v iptables >/dev/null; then
    for table in filter nat mangle; do
      for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }'); do
        grep -qxF "chain-before $table $chain" "$dir/host-changes" && continue
        while read -r rule; do
          # shellcheck disable=SC2086 # a rule is a list of words
          iptables -t "$table" ${rule/#-A/-D} 2>/dev/null || true
        done < <(iptables -t "$table" -S 2>/dev/null | grep -- "-j $chain\( \|$\)" || true)
        iptables -t "$table" -F "$chain" 2>/dev/null || true
        iptables -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  fi
  if grep -q "^bridge $NODE_BRIDGE$" "$dir/host-changes"; then ip link del "$NODE_BRIDGE" 2>/dev/null || true; fi
  if grep -q "^address $NODE_SERVICE_IP/32 lo$" "$dir/host-changes"; then
    ip addr del "$NODE_SERVICE_IP/32" dev lo 2>/dev/null || true
  fi
  # Mounts under the state dir and /run/containerd, deepest first.
  local mount_point
  while read -r mount_point; do
    umount -l "$mount_point" 2>/dev/null || true
  done < <(awk '{ print $5 }' /proc/self/mountinfo \
    | grep -E "^($dir|$NODE_HOST_DIR|/run/containerd)(/|$)" | awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2-)
  if [[ -d /var/log/containers ]]; then
    find /var/log/containers -maxdepth 1 -type l -lname "$dir/*" -delete 2>/dev/null || true
    if grep -q "^created /var/log/containers$" "$dir/host-changes"; then rmdir /var/log/containers 2>/dev/null || true; fi
  fi
  if grep -q "^created /run/containerd$" "$dir/host-changes"; then rm -rf /run/containerd; fi
  rm -rf "$NODE_HOST_DIR"
  if grep -q "^created /run/netns$" "$dir/host-changes"; then rmdir /run/netns 2>/dev/null || true; fi
  local key value
  while read -r key name value; do
    [[ "$key" == sysctl ]] || continue
    [[ "$(sysctl -n "$name" 2>/dev/null)" == "$value" ]] || sysctl -qw "$name=$value" 2>/dev/null || true
  done <"$dir/host-changes"
  if [[ -f "$NODE_LOCK" && "$(cat "$NODE_LOCK")" == "$dir" ]]; then rm -f "$NODE_LOCK"; fi
  rm -f "$dir/host-changes"
  return 0
}
