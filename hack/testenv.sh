#!/usr/bin/env bash
# A local test environment: a real Kubernetes control plane (etcd, kube-apiserver,
# kube-controller-manager) and Azurite, on 127.0.0.1, with data under a state directory.
# One implementation, two users: `make testenv` (runs `up`) and the Rust test harness (runs
# `serve`, which stops everything when the test binary's end of its stdin pipe closes).
#
#   hack/testenv.sh up [COMPONENT...]    start in the background (a running one is reused),
#                                        wait until ready, write $TESTENV_STATE/env.sh
#   hack/testenv.sh down [COMPONENT...]  stop and remove their data
#   hack/testenv.sh serve COMPONENT      start, print "READY <env file>", stop on stdin EOF
#   hack/testenv.sh sa-kubeconfig NAMESPACE SERVICEACCOUNT OUT   kubeconfig via TokenRequest
#   hack/testenv.sh kill|freeze|thaw|restart|revive COMPONENT DAEMON   fault injection: SIGKILL,
#                                        SIGSTOP, SIGCONT, or start again with the same flags,
#                                        ports, certificates and data (restart does not wait for
#                                        readiness; revive thaws or restarts, whichever it needs)
#
# COMPONENT: control-plane, azurite (HTTP, shared key), azurite-oauth (HTTPS, --oauth basic),
# entra (an Entra ID token endpoint emulator, HTTPS, trusting the control plane's ServiceAccount
# tokens; hack/entra-emulator.mjs). `up` starts entra after the others (it needs the control
# plane); `serve entra` needs ENTRA_TRUST_APISERVER, ENTRA_TRUST_APISERVER_CA and
# ENTRA_TRUST_KUBECONFIG (the harness passes its control plane's).
# node (containerd, kubelet and kube-scheduler joining the control plane; root on Linux only:
# see hack/node.sh; `serve node` joins the control plane named by TESTENV_CONTROL_PLANE_ENV).
# DAEMON: a name in $TESTENV_STATE/COMPONENT/pids (etcd, kube-apiserver, kube-controller-manager).
# Default: control-plane azurite azurite-oauth entra. State: $TESTENV_STATE (default target/testenv).
# Each component writes KEY=VALUE lines to $TESTENV_STATE/<component>/env.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=node.sh
source "$HACK_DIR/node.sh"

STATE="${TESTENV_STATE:-$REPO_ROOT/target/testenv}"
KUBE_BIN="$TESTENV_CACHE/kubernetes/$K8S_VERSION/bin"
KUBECTL="$TESTENV_CACHE/kubectl/$K8S_VERSION/bin/kubectl"
ETCD="$TESTENV_CACHE/etcd/$ETCD_DEBIAN_VERSION/bin/etcd"
AZURITE="$TESTENV_CACHE/azurite/$AZURITE_VERSION/node_modules/.bin/azurite"
JOSE_DIR="$TESTENV_CACHE/entra-emulator/jose-$ENTRA_EMULATOR_JOSE_VERSION"
# Microsoft's published key of the emulator's well-known account (not a secret).
DEV_ACCOUNT=devstoreaccount1
DEV_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
SECOND_ACCOUNT=sasop1
READY_TIMEOUT=${TESTENV_READY_TIMEOUT:-90}
# The worker node's name (one node per machine: see start_node).
NODE_NAME=testenv-node

need() {
  local path="$1" what="$2"
  [[ -x "$path" ]] || die "$what not found at $path; run 'make tools' to obtain it"
}

# A port nobody listens on, below Linux's ephemeral range so outgoing connections never take it.
free_port() {
  local port
  for _ in $(seq 100); do
    port=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  die "no free port found on 127.0.0.1"
}

random_base64() { head -c "$1" /dev/urandom | base64 -w0; }

# Starts a daemon in its own session (so a terminal's Ctrl-C does not reach it) and records
# its pid in $dir/pids; stdio goes to $dir/<name>.log so no caller's pipe stays open. The
# working directory and command line go to $dir/<name>.cmd, for `restart`.
start_daemon() {
  local dir="$1" name="$2"; shift 2
  { printf '%q\n' "$PWD"; printf '%q ' "$@"; echo; } >"$dir/$name.cmd"
  setsid "$@" </dev/null >"$dir/$name.log" 2>&1 &
  echo "$! $name" >>"$dir/pids"
}

# Starts daemon $2 of the component in $1 again, exactly as start_daemon first did (same
# flags, so the same ports, certificates and data directory), appending to its log, and
# replaces its line in the pids file.
relaunch_daemon() {
  local dir="$1" name="$2" cwd command
  { read -r cwd; read -r command; } <"$dir/$name.cmd"
  eval "cd $cwd" || die "cannot enter $cwd to restart $name"
  eval "setsid $command </dev/null >>\"\$dir/\$name.log\" 2>&1 &"
  local pid=$!
  { grep -v " $name\$" "$dir/pids" || true; echo "$pid $name"; } >"$dir/pids.new"
  mv "$dir/pids.new" "$dir/pids"
}

# The pid of daemon $2 of component $1 while it lives (a zombie does not count), else nothing.
daemon_pid() {
  local pid name
  while read -r pid name; do
    if [[ "$name" == "$2" ]] && grep -qa -- "$name" "/proc/$pid/cmdline" 2>/dev/null && alive "$pid"; then
      echo "$pid"
      return
    fi
  done <"$STATE/$1/pids"
}

# Waits until process $1 is gone (or a zombie), at most 5 s.
wait_gone() {
  for _ in $(seq 50); do alive "$1" || return 0; sleep 0.1; done
  die "process $1 did not exit within 5 s"
}

# Fault injection for tests: `fault ACTION COMPONENT DAEMON`.
fault() {
  local action="$1" component="$2" name="$3" dir="$STATE/$2" pid
  # Azurite's accounts come from the environment, which a restart would not repeat.
  [[ "$component" == control-plane ]] || die "fault injection covers the control plane only"
  [[ -f "$dir/pids" ]] || die "$component is not running (no $dir/pids)"
  [[ -f "$dir/$name.cmd" ]] || die "$component has no daemon '$name'"
  pid=$(daemon_pid "$component" "$name")
  case "$action" in
    kill)
      [[ -z "$pid" ]] && return 0
      kill -KILL "$pid" && wait_gone "$pid"
      ;;
    freeze) [[ -n "$pid" ]] || die "$name is not running"; kill -STOP "$pid" ;;
    thaw) [[ -n "$pid" ]] || die "$name is not running"; kill -CONT "$pid" ;;
    restart)
      if [[ -n "$pid" ]]; then kill -KILL "$pid" && wait_gone "$pid"; fi
      relaunch_daemon "$dir" "$name"
      ;;
    revive)
      if [[ -n "$pid" ]]; then kill -CONT "$pid"; else relaunch_daemon "$dir" "$name"; fi
      ;;
  esac
}

# Running and not a zombie (an exited daemon may wait for a reaper that never comes).
alive() { kill -0 "$1" 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

# All recorded processes of a component are alive and its env file was written.
running() {
  local dir="$STATE/$1" pid name
  [[ -f "$dir/env" && -f "$dir/pids" ]] || return 1
  while read -r pid name; do alive "$pid" || return 1; done <"$dir/pids"
}

stop_component() {
  local dir="$STATE/$1" pid name pids=()
  [[ -d "$dir" ]] || return 0
  if [[ -f "$dir/pids" ]]; then
    # The data is thrown away, so a graceful stop buys nothing (and a graceful kube-apiserver
    # stop takes seconds): SIGKILL, then wait until the kernel has released them.
    # A recorded pid may have been reused (e.g. after a reboot): only take ours.
    while read -r pid name; do
      grep -qa -- "$name" "/proc/$pid/cmdline" 2>/dev/null && pids+=("$pid")
    done <"$dir/pids"
    for pid in "${pids[@]+"${pids[@]}"}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for _ in $(seq 50); do
      local left=0
      for pid in "${pids[@]+"${pids[@]}"}"; do alive "$pid" && left=1; done
      (( left )) || break
      sleep 0.1
    done
  fi
  [[ "$1" == node ]] && node_teardown "$dir"
  rm -rf "$dir"
}

# Waits until `$check` succeeds, failing early (with the log tail) if a process died.
wait_for() {
  local dir="$1" what="$2" check="$3" deadline=$((SECONDS + READY_TIMEOUT)) pid name
  until eval "$check" >/dev/null 2>&1; do
    while read -r pid name; do
      if ! alive "$pid"; then
        log "$name exited while waiting for $what; last lines of $dir/$name.log:"
        tail -n 20 "$dir/$name.log" >&2
        return 1
      fi
    done <"$dir/pids"
    (( SECONDS < deadline )) || { log "timed out after ${READY_TIMEOUT}s waiting for $what"; return 1; }
    sleep 0.2
  done
}

write_kubeconfig() {
  local out="$1" server="$2" ca="$3" user="$4" token="$5"
  cat >"$out" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 <"$ca")
users:
- name: $user
  user:
    token: $token
contexts:
- name: $user@testenv
  context:
    cluster: testenv
    user: $user
current-context: $user@testenv
EOF
  chmod 600 "$out"
}

start_control_plane_once() {
  local dir="$1"
  local etcd_port apiserver_port token kcm_token node_token server
  etcd_port=$(free_port)
  apiserver_port=$(free_port)
  server="https://127.0.0.1:$apiserver_port"
  token=$(head -c 24 /dev/urandom | base64 -w0 | tr '+/' '-_')
  kcm_token=$(head -c 24 /dev/urandom | base64 -w0 | tr '+/' '-_')
  node_token=$(head -c 24 /dev/urandom | base64 -w0 | tr '+/' '-_')
  : >"$dir/pids"
  mkdir -p "$dir/pki"
  openssl genrsa -out "$dir/pki/sa.key" 2048 2>/dev/null
  # The controller-manager gets its own user name so the audit log tells it apart from tests.
  printf '%s\n' "$token,admin,admin,system:masters" \
    "$kcm_token,system:kube-controller-manager,kube-controller-manager,system:masters" \
    "$node_token,system:node:$NODE_NAME,kubelet,\"system:nodes,system:masters\"" >"$dir/pki/tokens.csv"
  # The apiserver authenticates to a node's kubelet (logs, exec) with a client certificate
  # from a CA that only this control plane has; the node's kubelet trusts exactly that CA.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
    -subj /CN=testenv-kubelet-client-ca -keyout "$dir/pki/kubelet-client-ca.key" \
    -out "$dir/pki/kubelet-client-ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
    -keyout "$dir/pki/kubelet-client.key" -out "$dir/pki/kubelet-client.csr" 2>/dev/null
  printf '%s\n' 'basicConstraints=CA:FALSE' 'extendedKeyUsage=clientAuth' >"$dir/pki/kubelet-client.ext"
  openssl x509 -req -in "$dir/pki/kubelet-client.csr" -CA "$dir/pki/kubelet-client-ca.crt" \
    -CAkey "$dir/pki/kubelet-client-ca.key" -CAcreateserial -days 7 \
    -extfile "$dir/pki/kubelet-client.ext" -out "$dir/pki/kubelet-client.crt" 2>/dev/null
  cat >"$dir/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
EOF

  start_daemon "$dir" etcd "$ETCD" --name testenv --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls http://127.0.0.1:0 --unsafe-no-fsync --log-level warn
  wait_for "$dir" "etcd" "curl -fsS http://127.0.0.1:$etcd_port/health" || return 1

  start_daemon "$dir" kube-apiserver "$KUBE_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --cert-dir "$dir/pki" --secure-port "$apiserver_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
    --service-cluster-ip-range 10.0.0.0/24 \
    --authorization-mode RBAC --token-auth-file "$dir/pki/tokens.csv" \
    --service-account-issuer "$server/" \
    --service-account-key-file "$dir/pki/sa.key" \
    --service-account-signing-key-file "$dir/pki/sa.key" \
    --audit-policy-file "$dir/audit-policy.yaml" --audit-log-path "$dir/audit.log" \
    --audit-log-maxsize 2048 --audit-log-maxbackup 1 \
    --kubelet-preferred-address-types InternalIP \
    --kubelet-client-certificate "$dir/pki/kubelet-client.crt" \
    --kubelet-client-key "$dir/pki/kubelet-client.key"
  wait_for "$dir" "kube-apiserver /readyz" \
    "curl -fsS --cacert '$dir/pki/apiserver.crt' -H 'Authorization: Bearer $token' '$server/readyz'" || return 1
  write_kubeconfig "$dir/kubeconfig" "$server" "$dir/pki/apiserver.crt" admin "$token"
  write_kubeconfig "$dir/kube-controller-manager.kubeconfig" "$server" "$dir/pki/apiserver.crt" \
    system:kube-controller-manager "$kcm_token"
  write_kubeconfig "$dir/node.kubeconfig" "$server" "$dir/pki/apiserver.crt" \
    "system:node:$NODE_NAME" "$node_token"

  # clusterrole-aggregation-controller: the built-in view/edit/admin ClusterRoles take in
  # deploy/'s aggregated roles, as on any cluster (tests/hostile/tenancy.rs).
  start_daemon "$dir" kube-controller-manager "$KUBE_BIN/kube-controller-manager" \
    --kubeconfig "$dir/kube-controller-manager.kubeconfig" --leader-elect=false --secure-port 0 \
    --controllers clusterrole-aggregation-controller,garbage-collector-controller,namespace-controller,serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller,deployment-controller,replicaset-controller,node-lifecycle-controller \
    --service-account-private-key-file "$dir/pki/sa.key" \
    --root-ca-file "$dir/pki/apiserver.crt"
  # The serviceaccount controller creating `default` in `default` proves the controllers run.
  wait_for "$dir" "kube-controller-manager (the default ServiceAccount)" \
    "curl -fsS --cacert '$dir/pki/apiserver.crt' -H 'Authorization: Bearer $token' '$server/api/v1/namespaces/default/serviceaccounts/default'" || return 1

  cat >"$dir/env" <<EOF
KUBECONFIG=$dir/kubeconfig
TESTENV_APISERVER=$server
TESTENV_APISERVER_CA=$dir/pki/apiserver.crt
TESTENV_AUDIT_LOG=$dir/audit.log
TESTENV_KUBECTL=$KUBECTL
TESTENV_APISERVER_PORT=$apiserver_port
TESTENV_NODE_KUBECONFIG=$dir/node.kubeconfig
TESTENV_KUBELET_CLIENT_CA=$dir/pki/kubelet-client-ca.crt
EOF
}

start_control_plane() {
  local dir="$STATE/control-plane"
  need "$ETCD" "etcd $ETCD_DEBIAN_VERSION"
  need "$KUBE_BIN/kube-apiserver" "kube-apiserver $K8S_VERSION"
  need "$KUBE_BIN/kube-controller-manager" "kube-controller-manager $K8S_VERSION"
  need "$KUBECTL" "kubectl $K8S_VERSION"
  # A free port can be taken between choosing and binding it; try again with new ports.
  for attempt in 1 2 3; do
    rm -rf "$dir" && mkdir -p "$dir"
    start_control_plane_once "$dir" && return 0
    log "control plane: start attempt $attempt failed"
    stop_component control-plane
  done
  die "control plane did not start (logs were printed above)"
}

# Self-signed CA plus a leaf for 127.0.0.1 (rustls refuses a CA certificate as a server's).
make_tls() {
  local dir="$1" ca_name="${2:-sas-operator-testenv-ca}"
  openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=$ca_name" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf '%s\n' 'basicConstraints=CA:FALSE' 'keyUsage=digitalSignature,keyEncipherment' \
    'extendedKeyUsage=serverAuth' 'subjectAltName=IP:127.0.0.1,DNS:localhost' >"$dir/server.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 7 -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
}

start_azurite() {
  local component="$1" dir="$STATE/$1" scheme=http key1 key2 extra=()
  need "$AZURITE" "azurite $AZURITE_VERSION"
  rm -rf "$dir" && mkdir -p "$dir"
  : >"$dir/pids"
  key1=$(random_base64 64)
  key2=$(random_base64 64)
  if [[ "$component" == azurite-oauth ]]; then
    make_tls "$dir"
    scheme=https
    # The debug log records every request (headers included), so tests can count
    # Get User Delegation Key calls per caller.
    extra=(--oauth basic --cert "$dir/server.crt" --key "$dir/server.key" --debug "$dir/debug.log")
  fi
  # Port 0: Azurite prints the ports the kernel gave it, so there is no race for them.
  (cd "$dir" && AZURITE_ACCOUNTS="$DEV_ACCOUNT:$DEV_KEY;$SECOND_ACCOUNT:$key1:$key2" \
    start_daemon "$dir" azurite "$AZURITE" --blobPort 0 --queuePort 0 --tablePort 0 \
      --inMemoryPersistence --skipApiVersionCheck --loose --disableTelemetry --silent "${extra[@]}")
  wait_for "$dir" "azurite" "(( \$(grep -c 'service is successfully listening' '$dir/azurite.log') >= 3 ))" \
    || { stop_component "$component"; die "azurite did not start"; }
  port() { sed -n "s#.*$1 service is successfully listening at $scheme://127.0.0.1:\([0-9]*\).*#\1#p" "$dir/azurite.log"; }
  local blob queue table
  blob=$(port Blob); queue=$(port Queue); table=$(port Table)
  {
    echo "AZURITE_BLOB_PORT=$blob"
    echo "AZURITE_QUEUE_PORT=$queue"
    echo "AZURITE_TABLE_PORT=$table"
    echo "AZURITE_BLOB_ENDPOINT=$scheme://127.0.0.1:$blob/$DEV_ACCOUNT"
    echo "AZURITE_QUEUE_ENDPOINT=$scheme://127.0.0.1:$queue/$DEV_ACCOUNT"
    echo "AZURITE_TABLE_ENDPOINT=$scheme://127.0.0.1:$table/$DEV_ACCOUNT"
    echo "AZURITE_ACCOUNT_NAME=$DEV_ACCOUNT"
    echo "AZURITE_ACCOUNT_KEY=$DEV_KEY"
    echo "AZURITE_SECOND_ACCOUNT_NAME=$SECOND_ACCOUNT"
    echo "AZURITE_SECOND_ACCOUNT_KEY1=$key1"
    echo "AZURITE_SECOND_ACCOUNT_KEY2=$key2"
    if [[ "$scheme" == https ]]; then
      echo "AZURITE_CA_CERT=$dir/ca.crt"
      echo "AZURITE_DEBUG_LOG=$dir/debug.log"
    fi
  } >"$dir/env.tmp"
  mv "$dir/env.tmp" "$dir/env"
}

# The Entra ID token endpoint emulator. Like Entra, it fetches the ServiceAccount issuer's OIDC
# discovery document and JWKS anonymously over HTTPS (it holds no cluster credential), so the
# control plane gets the binding that makes them public, as a cloud cluster's issuer is.
start_entra() {
  local dir="$STATE/entra" apiserver ca kubeconfig issuer
  command -v node >/dev/null || die "entra: node is not installed (e.g. apt-get install nodejs)"
  [[ -f "$JOSE_DIR/.complete" ]] || die "entra: jose $ENTRA_EMULATOR_JOSE_VERSION not found at $JOSE_DIR; run 'make tools' to obtain it"
  need "$KUBECTL" "kubectl $K8S_VERSION"
  apiserver="${ENTRA_TRUST_APISERVER:-}" ca="${ENTRA_TRUST_APISERVER_CA:-}" kubeconfig="${ENTRA_TRUST_KUBECONFIG:-}"
  if [[ -z "$apiserver" ]]; then
    running control-plane || die "entra: the control plane is not running; start it first ('hack/testenv.sh up control-plane entra')"
    apiserver=$(sed -n 's/^TESTENV_APISERVER=//p' "$STATE/control-plane/env")
    ca=$(sed -n 's/^TESTENV_APISERVER_CA=//p' "$STATE/control-plane/env")
    kubeconfig=$(sed -n 's/^KUBECONFIG=//p' "$STATE/control-plane/env")
  fi
  [[ -n "$apiserver" && -f "$ca" && -f "$kubeconfig" ]] || die "entra: the control plane's address, CA and kubeconfig are needed"
  rm -rf "$dir" && mkdir -p "$dir"
  : >"$dir/pids"
  "$KUBECTL" --kubeconfig "$kubeconfig" create clusterrolebinding testenv-public-oidc-discovery \
    --clusterrole system:service-account-issuer-discovery --group system:unauthenticated \
    --dry-run=client -o yaml | "$KUBECTL" --kubeconfig "$kubeconfig" apply -f - >/dev/null \
    || die "entra: could not make the ServiceAccount issuer's discovery documents public"
  wait_for "$dir" "anonymous OIDC discovery on the kube-apiserver" \
    "curl -fsS --cacert '$ca' '$apiserver/.well-known/openid-configuration'" || die "entra: OIDC discovery stayed private"
  issuer=$(curl -fsS --cacert "$ca" "$apiserver/.well-known/openid-configuration" | sed -n 's/.*"issuer":"\([^"]*\)".*/\1/p')
  [[ "$issuer" == https://* ]] || die "entra: the kube-apiserver's discovery document names no https issuer"
  make_tls "$dir" sas-operator-testenv-entra-ca
  start_daemon "$dir" entra-emulator node "$HACK_DIR/entra-emulator.mjs" --jose-dir "$JOSE_DIR" \
    --cert "$dir/server.crt" --key "$dir/server.key" --issuer-ca "$ca" --default-issuer "$issuer" --port 0
  wait_for "$dir" "the entra emulator" "grep -q 'entra emulator listening on' '$dir/entra-emulator.log'" \
    || { stop_component entra; die "the entra emulator did not start"; }
  local port
  port=$(sed -n 's#.*entra emulator listening on https://127.0.0.1:\([0-9]*\).*#\1#p' "$dir/entra-emulator.log")
  {
    echo "ENTRA_AUTHORITY_HOST=https://127.0.0.1:$port"
    echo "ENTRA_CA_CERT=$dir/ca.crt"
    echo "ENTRA_TRUSTED_ISSUER=$issuer"
    echo "ENTRA_LOG=$dir/entra-emulator.log"
  } >"$dir/env.tmp"
  mv "$dir/env.tmp" "$dir/env"
}

# A running entra trusts the control plane it was started for; after a control-plane restart
# (new port, new key) it must be restarted too.
stale() {
  [[ "$1" == entra && -z "${ENTRA_TRUST_APISERVER:-}" ]] || return 1
  local server
  server=$(sed -n 's/^TESTENV_APISERVER=//p' "$STATE/control-plane/env" 2>/dev/null)
  ! grep -qx "ENTRA_TRUSTED_ISSUER=$server/" "$STATE/entra/env"
}

start_component() {
  local component="$1" started=$SECONDS
  if running "$component" && ! stale "$component"; then
    log "$component: already running (state in $STATE/$component)"
    return
  fi
  stop_component "$component" # leftovers of a dead one
  mkdir -p "$STATE"
  case "$component" in
    control-plane) start_control_plane ;;
    azurite | azurite-oauth) start_azurite "$component" ;;
    entra) start_entra ;;
    node) start_node ;;
    *) die "unknown component '$component' (control-plane, azurite, azurite-oauth, entra, node)" ;;
  esac
  log "$component: ready in $((SECONDS - started)) s"
}

# env.sh for a shell: `source target/testenv/env.sh`.
write_env_sh() {
  local component
  {
    echo "# Written by hack/testenv.sh; source it to use the running test environment."
    for component in control-plane azurite azurite-oauth entra node; do
      [[ -f "$STATE/$component/env" ]] || continue
      if [[ "$component" == azurite-oauth ]]; then
        sed -e 's/^AZURITE_/AZURITE_OAUTH_/' -e 's/^/export /' "$STATE/$component/env"
      else
        sed 's/^/export /' "$STATE/$component/env"
      fi
    done
  } >"$STATE/env.sh"
}

cmd="${1:-}"
shift || true
case "$cmd" in
  up)
    (( $# )) || set -- control-plane azurite azurite-oauth entra
    # Components are independent: start them side by side; entra then, as it trusts the
    # control plane's ServiceAccount tokens; the node joins the control plane once it is up.
    started=$SECONDS waits=() with_entra=false with_node=false
    for component in "$@"; do
      if [[ "$component" == entra ]]; then with_entra=true; continue; fi
      if [[ "$component" == node ]]; then with_node=true; continue; fi
      start_component "$component" & waits+=("$!")
    done
    failed=0
    for pid in "${waits[@]+"${waits[@]}"}"; do wait "$pid" || failed=1; done
    if (( failed == 0 )) && $with_entra; then (start_component entra) || failed=1; fi
    (( failed == 0 )) || die "the test environment did not start (see above); 'make testenv-down' cleans up"
    if $with_node; then
      start_component node || die "the node did not start (see above); 'make testenv-down' cleans up"
    fi
    write_env_sh
    log "test environment up in $((SECONDS - started)) s"
    log "test environment ready: source $STATE/env.sh"
    ;;
  down)
    (( $# )) || set -- node entra control-plane azurite azurite-oauth
    for component in "$@"; do stop_component "$component"; done
    rm -f "$STATE/env.sh"
    rmdir "$STATE" 2>/dev/null || true
    ;;
  serve)
    (( $# == 1 )) || die "usage: $0 serve COMPONENT"
    served_component="$1" # not "$1" in the trap: an exit inside a function has that function's
    trap 'stop_component "$served_component"; rmdir "$STATE" 2>/dev/null || true' EXIT
    trap 'exit 130' INT TERM HUP
    start_component "$1"
    echo "READY $STATE/$1/env"
    exec >/dev/null
    # The harness holds our stdin open for as long as the test binary lives.
    while read -r _; do :; done
    ;;
  sa-kubeconfig)
    (( $# == 3 )) || die "usage: $0 sa-kubeconfig NAMESPACE SERVICEACCOUNT OUT"
    dir="$STATE/control-plane"
    running control-plane || die "the control plane is not running; run 'make testenv' first"
    # shellcheck disable=SC1091
    source "$dir/env"
    token=$("$KUBECTL" --kubeconfig "$dir/kubeconfig" -n "$1" create token "$2" --duration 24h)
    write_kubeconfig "$3" "$TESTENV_APISERVER" "$TESTENV_APISERVER_CA" "system:serviceaccount:$1:$2" "$token"
    ;;
  kill | freeze | thaw | restart | revive)
    (( $# == 2 )) || die "usage: $0 $cmd COMPONENT DAEMON"
    fault "$cmd" "$1" "$2"
    ;;
  *)
    sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
