#!/usr/bin/env bash
# `make demo`: a local control plane and Azurite, the CRD, the operator, the grants in
# examples/, and proof that a token from a Secret works: a blob uploaded and downloaded with it.
# Where a worker node can run (root on Linux), the operator runs as pods from deploy/ (its
# image built without Docker by hack/image.sh) and a consumer pod uses a rotating token from
# its mounted Secret; elsewhere, or with DEMO_LOCAL_OPERATOR=1, the operator runs as a local
# process and the demo adds one keyless grant: a SasIssuer with workload identity (the Entra ID
# emulator and Azurite over HTTPS with OAuth) signs a user delegation SAS with no account key.
#
#   hack/demo.sh        set everything up (the first run builds the control plane: minutes)
#   hack/demo.sh down   stop the operator, the control plane and Azurite
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=node.sh
source "$HACK_DIR/node.sh"

DEMO_DIR="$REPO_ROOT/target/demo"
NAMESPACE=demo

stop_operator() {
  if [[ -f "$DEMO_DIR/operator.pid" ]]; then
    kill "$(cat "$DEMO_DIR/operator.pid")" 2>/dev/null || true
    rm -f "$DEMO_DIR/operator.pid"
  fi
}

if [[ "${1:-}" == "down" ]]; then
  stop_operator
  "$HACK_DIR/testenv.sh" down
  log "demo stopped"
  exit 0
fi

step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }

step "Obtaining the control plane and Azurite (cached after the first run)"
"$HACK_DIR/tools.sh"

step "Building sas-operator"
(cd "$REPO_ROOT" && cargo build --quiet --bin sas-operator)
operator="$REPO_ROOT/target/debug/sas-operator"

node_reason="$(node_unsupported_reason)"
if [[ "${DEMO_LOCAL_OPERATOR:-0}" == 1 ]]; then
  node_reason="DEMO_LOCAL_OPERATOR=1"
fi
components=(control-plane azurite)
if [[ -z "$node_reason" ]]; then
  components+=(node)
  step "Starting kube-apiserver, etcd, kube-controller-manager, Azurite and a worker node (containerd, kubelet, kube-scheduler)"
else
  log "no worker node: $node_reason; the operator runs as a local process instead of pods"
  # The keyless grant's emulators: Azurite over HTTPS with OAuth, and Entra ID.
  components+=(azurite-oauth entra)
  step "Starting kube-apiserver, etcd, kube-controller-manager, Azurite (HTTP and HTTPS+OAuth) and the Entra ID emulator on 127.0.0.1"
fi
"$HACK_DIR/testenv.sh" up "${components[@]}"
# shellcheck disable=SC1091
source "$REPO_ROOT/target/testenv/env.sh"
kubectl() { "$TESTENV_KUBECTL" "$@"; }
mkdir -p "$DEMO_DIR"
# The operator accepts only Azure's own storage hosts, plus the host:ports it is told to allow:
# here the emulators' (--allow-storage-endpoint, env SAS_OPERATOR_ALLOW_STORAGE_ENDPOINTS).
host_port() { local rest="${1#*://}"; echo "${rest%%/*}"; }
allowed_endpoints="$(host_port "$AZURITE_BLOB_ENDPOINT"),$(host_port "$AZURITE_QUEUE_ENDPOINT"),$(host_port "$AZURITE_TABLE_ENDPOINT")"
if [[ -n "${AZURITE_OAUTH_BLOB_ENDPOINT:-}" ]]; then
  allowed_endpoints+=",$(host_port "$AZURITE_OAUTH_BLOB_ENDPOINT")"
fi

if [[ -z "$node_reason" ]]; then
  step "Building the operator image without Docker (hack/image.sh: a static release build, minutes the first time)"
  image="$("$HACK_DIR/image.sh")"
  "$TESTENV_CTR" --address "$TESTENV_CONTAINERD_ADDRESS" -n k8s.io images import \
    "$REPO_ROOT/target/image/sas-operator.tar" >/dev/null
  step "Installing deploy/ (CRD, RBAC, 2 replicas with leader election) with the image $image, allowing Azurite's endpoints"
  mkdir -p "$DEMO_DIR/deploy-overlay"
  cat >"$DEMO_DIR/deploy-overlay/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../../deploy
images:
  - name: sas-operator
    newName: ${image%:*}
    newTag: "${image##*:}"
patches:
  - patch: |-
      apiVersion: apps/v1
      kind: Deployment
      metadata: {name: sas-operator, namespace: sas-operator}
      spec:
        template:
          spec:
            containers:
              - name: sas-operator
                env:
                  - {name: SAS_OPERATOR_ALLOW_STORAGE_ENDPOINTS, value: "$allowed_endpoints"}
EOF
  kubectl apply -k "$DEMO_DIR/deploy-overlay" >/dev/null
  kubectl rollout status -n sas-operator deployment/sas-operator --timeout=120s
  kubectl get pods -n sas-operator -o wide
else
  step "Installing the CRDs (SasGrant, SasIssuer, ClusterSasIssuer)"
  kubectl apply --server-side -f "$REPO_ROOT/crds/" >/dev/null
  kubectl wait --for condition=established --timeout=30s \
    crd/sasgrants.sas-operator.io crd/sasissuers.sas-operator.io crd/clustersasissuers.sas-operator.io >/dev/null

  step "Running the operator (logs: target/demo/operator.log)"
  stop_operator
  admin_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # The authority host, the CAs and the allowed endpoints are the emulators'; in Azure, leave
  # all three at their defaults.
  setsid "$operator" run --leader-election false --metrics-address "127.0.0.1:$admin_port" \
    --authority-host "$ENTRA_AUTHORITY_HOST" --extra-ca-file "$ENTRA_CA_CERT,$AZURITE_OAUTH_CA_CERT" \
    --allow-storage-endpoint "$allowed_endpoints" \
    </dev/null >"$DEMO_DIR/operator.log" 2>&1 &
  echo $! >"$DEMO_DIR/operator.pid"
  for _ in $(seq 60); do
    curl -fsS "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1 && break
    sleep 0.5
  done
  curl -fsS "http://127.0.0.1:$admin_port/readyz" >/dev/null || die "the operator did not become ready; see $DEMO_DIR/operator.log"
fi

step "Applying examples/ (a labelled key Secret for Azurite's account and four grants) to namespace $NAMESPACE"
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
# The examples name Azurite's default ports; this Azurite listens on free ones.
kubectl kustomize "$REPO_ROOT/examples" \
  | sed -e "s#http://127.0.0.1:10000/devstoreaccount1#$AZURITE_BLOB_ENDPOINT#" \
        -e "s#http://127.0.0.1:10001/devstoreaccount1#$AZURITE_QUEUE_ENDPOINT#" \
        -e "s#http://127.0.0.1:10002/devstoreaccount1#$AZURITE_TABLE_ENDPOINT#" \
  | kubectl apply -n "$NAMESPACE" -f -
# The operator signs only with key Secrets opted in by this label. examples/ already sets it;
# this is the command for a key Secret made another way (Azure Service Operator, by hand).
kubectl label --overwrite secret azurite-keys -n "$NAMESPACE" sas-operator.io/signing-key=true
kubectl wait -n "$NAMESPACE" --for condition=Ready --timeout=60s sasgrant --all
kubectl get sasgrants -n "$NAMESPACE" -o wide

step "The Secret the operator wrote for demo-container (keys and expiry; the token itself stays in the Secret)"
kubectl get secret demo-container-sas -n "$NAMESPACE" \
  -o go-template='{{range $k, $v := .data}}{{printf "  %-17s %d bytes\n" $k (len $v)}}{{end}}'
expires=$(kubectl get secret demo-container-sas -n "$NAMESPACE" -o jsonpath='{.data.expiresAt}' | base64 -d)
echo "  expires at        $expires"

step "Proving the token works: upload and download a blob in Azurite with it"
# The container itself is created with a one-off account SAS from the CLI (`sas-operator sign`).
admin_token=$(AZURE_STORAGE_KEY="$AZURITE_ACCOUNT_KEY" "$operator" sign account \
  --account-name "$AZURITE_ACCOUNT_NAME" --services b --resource-types c --permissions c \
  --protocol https,http --expiry "$(date -u -d '+10 minutes' +%Y-%m-%dT%H:%M:%SZ)")
curl -fsS -o /dev/null -X PUT -H 'x-ms-version: 2025-11-05' \
  "$AZURITE_BLOB_ENDPOINT/demo?restype=container&$admin_token" 2>/dev/null || true
token=$(kubectl get secret demo-container-sas -n "$NAMESPACE" -o jsonpath='{.data.sasToken}' | base64 -d)
body="hello from sas-operator at $(date -u +%H:%M:%S)"
curl -fsS -X PUT -H 'x-ms-version: 2025-11-05' -H 'x-ms-blob-type: BlockBlob' --data-binary "$body" \
  "$AZURITE_BLOB_ENDPOINT/demo/hello.txt?$token" -o /dev/null || die "upload with the token failed"
downloaded=$(curl -fsS -H 'x-ms-version: 2025-11-05' "$AZURITE_BLOB_ENDPOINT/demo/hello.txt?$token") \
  || die "download with the token failed"
[[ "$downloaded" == "$body" ]] || die "downloaded a different body: $downloaded"
echo "  uploaded and downloaded demo/hello.txt with the Secret's sasToken: \"$downloaded\""

if [[ -z "$node_reason" ]]; then
  step "A consumer pod: reads sasUrl from its mounted Secret before every request, uploads and downloads a blob"
  # A grant that rotates every minute or so (validity 3m, renewBefore 2m), to watch it happen.
  kubectl apply -n "$NAMESPACE" -f - >/dev/null <<EOF
apiVersion: sas-operator.io/v1alpha1
kind: SasGrant
metadata:
  name: demo-consumer
spec:
  storageAccount:
    name: devstoreaccount1
    keySecretRef: {name: azurite-keys}
    endpoints: {blob: "$AZURITE_BLOB_ENDPOINT"}
  resource:
    container: {name: demo}
  permissions: rwl
  protocol: https,http
  validity: 3m
  renewBefore: 2m
---
apiVersion: v1
kind: Pod
metadata:
  name: consumer
spec:
  hostNetwork: true # Azurite listens on the host's loopback
  securityContext: {runAsNonRoot: true, runAsUser: 65532}
  containers:
    - name: consumer
      image: $TESTENV_CONSUMER_IMAGE
      imagePullPolicy: Never
      volumeMounts: [{name: sas, mountPath: /var/run/sas, readOnly: true}]
  volumes:
    - name: sas
      secret: {secretName: demo-consumer}
EOF
  kubectl wait -n "$NAMESPACE" --for condition=Ready --timeout=60s pod/consumer >/dev/null
  for _ in $(seq 30); do
    kubectl logs -n "$NAMESPACE" consumer 2>/dev/null | grep -q '"event":"round"' && break
    sleep 1
  done
  kubectl logs -n "$NAMESPACE" consumer | head -n 4
fi

if [[ -z "$node_reason" ]]; then
  cat <<EOF

Demo is running: the operator as pods from deploy/ on node $TESTENV_NODE_NAME, and a consumer pod.
(The keyless grant is shown with the operator as a local process: DEMO_LOCAL_OPERATOR=1 make demo.)
Try:
  source target/testenv/env.sh && alias kubectl="\$TESTENV_KUBECTL"
  kubectl logs -f consumer -n $NAMESPACE            # a round per second; "token-changed" about every minute
  kubectl get sasg -A                              # grants, Ready, expiry
  kubectl get pods -n sas-operator -o wide         # two replicas; the Lease names the leader:
  kubectl get lease sas-operator -n sas-operator -o jsonpath='{.spec.holderIdentity}{"\n"}'
  kubectl logs -n sas-operator deployment/sas-operator
Stop it all with: make demo-down
EOF
  exit 0
fi

step "Keyless: a SasIssuer with workload identity and a grant, no account key in namespace $NAMESPACE-keyless"
keyless_ns="$NAMESPACE-keyless"
kubectl create namespace "$keyless_ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl create serviceaccount storage-signer -n "$keyless_ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
# A namespace admin lends it to the operator: deploy/ grants no serviceaccounts/token, so without
# these the grant is ServiceAccountNotBound (its message gives these commands). This local
# operator runs as the cluster admin and would not need them; deploy/'s does.
kubectl create role sas-operator-token-storage-signer --verb=create --resource=serviceaccounts/token \
  --resource-name=storage-signer -n "$keyless_ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl create rolebinding sas-operator-token-storage-signer --role=sas-operator-token-storage-signer \
  --serviceaccount=sas-operator:sas-operator -n "$keyless_ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
# In Azure: an app registration or managed identity with a federated credential for this
# ServiceAccount, and the roles Storage Blob Delegator plus Storage Blob Data Contributor.
tenant_id=$(python3 -c 'import uuid; print(uuid.uuid4())')
client_id=$(python3 -c 'import uuid; print(uuid.uuid4())')
curl -fsS --cacert "$ENTRA_CA_CERT" -H 'Content-Type: application/json' \
  -d "{\"tenantId\":\"$tenant_id\",\"clientId\":\"$client_id\",\"subject\":\"system:serviceaccount:$keyless_ns:storage-signer\"}" \
  "$ENTRA_AUTHORITY_HOST/_emulator/federated-credentials" >/dev/null \
  || die "registering the federated credential with the Entra emulator failed"
echo "  federated credential: system:serviceaccount:$keyless_ns:storage-signer -> client $client_id"
kubectl apply -n "$keyless_ns" -f - >/dev/null <<YAML
apiVersion: sas-operator.io/v1alpha1
kind: SasIssuer
metadata:
  name: storage
spec:
  storageAccount:
    name: $AZURITE_OAUTH_ACCOUNT_NAME
    endpoints: {blob: $AZURITE_OAUTH_BLOB_ENDPOINT}
  workloadIdentity:
    clientId: $client_id
    tenantId: $tenant_id
    serviceAccountName: storage-signer
---
apiVersion: sas-operator.io/v1alpha1
kind: SasGrant
metadata:
  name: demo-keyless
spec:
  issuerRef: {kind: SasIssuer, name: storage}
  resource: {container: {name: keyless}}
  permissions: rwl
  target: {secretName: demo-keyless-sas}
YAML
# The container is made with a one-off account SAS (Azurite takes shared key too; an Azure
# account with Shared Key disabled would not); everything after goes through the operator's
# user delegation SAS.
oauth_admin_token=$(AZURE_STORAGE_KEY="$AZURITE_OAUTH_ACCOUNT_KEY" "$operator" sign account \
  --account-name "$AZURITE_OAUTH_ACCOUNT_NAME" --services b --resource-types c --permissions c \
  --expiry "$(date -u -d '+10 minutes' +%Y-%m-%dT%H:%M:%SZ)")
curl -sS -o /dev/null --cacert "$AZURITE_OAUTH_CA_CERT" -X PUT -H 'x-ms-version: 2025-05-05' \
  "$AZURITE_OAUTH_BLOB_ENDPOINT/keyless?restype=container&$oauth_admin_token" || true
kubectl wait -n "$keyless_ns" --for condition=Ready --timeout=60s sasgrant/demo-keyless sasissuer/storage
kubectl get sasissuer,sasgrant -n "$keyless_ns"
keyless_token=$(kubectl get secret demo-keyless-sas -n "$keyless_ns" -o jsonpath='{.data.sasToken}' | base64 -d)
echo "  user delegation SAS fields: $(tr '&' '\n' <<<"$keyless_token" | grep -E '^(skoid|sktid|ske|se)=' | tr '\n' ' ')"
body="hello keyless at $(date -u +%H:%M:%S)"
curl -fsS --cacert "$AZURITE_OAUTH_CA_CERT" -X PUT -H 'x-ms-version: 2025-05-05' -H 'x-ms-blob-type: BlockBlob' \
  --data-binary "$body" "$AZURITE_OAUTH_BLOB_ENDPOINT/keyless/hello.txt?$keyless_token" -o /dev/null \
  || die "upload with the user delegation SAS failed"
downloaded=$(curl -fsS --cacert "$AZURITE_OAUTH_CA_CERT" -H 'x-ms-version: 2025-05-05' \
  "$AZURITE_OAUTH_BLOB_ENDPOINT/keyless/hello.txt?$keyless_token") || die "download with the user delegation SAS failed"
[[ "$downloaded" == "$body" ]] || die "downloaded a different body: $downloaded"
echo "  uploaded and downloaded keyless/hello.txt with the user delegation SAS: \"$downloaded\""
echo "  Secrets in $keyless_ns: $(kubectl get secrets -n "$keyless_ns" -o name | tr '\n' ' ')(no account key)"

cat <<EOF

Demo is running. Try:
  source target/testenv/env.sh && alias kubectl="\$TESTENV_KUBECTL"
  kubectl get sasg -A                         # grants, Ready, expiry
  kubectl get sasissuer -A                    # the keyless issuer, Ready, Reason
  kubectl describe sasg demo-queue -n $NAMESPACE   # conditions and events (rotates every ~5 min)
  kubectl get secret demo-container-sas -n $NAMESPACE -o yaml
  curl -s http://127.0.0.1:$admin_port/metrics | grep sas_operator_grant
  tail -f target/demo/operator.log
Stop it all with: make demo-down
EOF
