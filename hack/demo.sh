#!/usr/bin/env bash
# `make demo`: a local control plane and Azurite, the CRDs, the operator, the grants in
# examples/, and proof that a token from a Secret works: a blob uploaded and downloaded with it.
# Then one keyless grant: a SasIssuer with workload identity (the Entra ID emulator and Azurite
# over HTTPS with OAuth) signs a user delegation SAS with no account key in the cluster.
#
#   hack/demo.sh        set everything up (the first run builds the control plane: minutes)
#   hack/demo.sh down   stop the operator, the control plane and Azurite
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

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

step "Starting kube-apiserver, etcd, kube-controller-manager, Azurite (HTTP and HTTPS+OAuth) and the Entra ID emulator on 127.0.0.1"
"$HACK_DIR/testenv.sh" up control-plane azurite azurite-oauth entra
# shellcheck disable=SC1091
source "$REPO_ROOT/target/testenv/env.sh"
kubectl() { "$TESTENV_KUBECTL" "$@"; }

step "Installing the CRDs (SasGrant, SasIssuer, ClusterSasIssuer)"
for crd in sasgrant sasissuer clustersasissuer; do
  kubectl apply --server-side -f "$REPO_ROOT/crds/$crd.yaml" >/dev/null
done
kubectl wait --for condition=established --timeout=30s \
  crd/sasgrants.sas-operator.io crd/sasissuers.sas-operator.io crd/clustersasissuers.sas-operator.io >/dev/null

step "Running the operator (logs: target/demo/operator.log)"
mkdir -p "$DEMO_DIR"
stop_operator
admin_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The authority host and the CAs are the emulators'; in Azure, leave both at their defaults.
setsid "$operator" run --leader-election false --metrics-address "127.0.0.1:$admin_port" \
  --authority-host "$ENTRA_AUTHORITY_HOST" --extra-ca-file "$ENTRA_CA_CERT,$AZURITE_OAUTH_CA_CERT" \
  </dev/null >"$DEMO_DIR/operator.log" 2>&1 &
echo $! >"$DEMO_DIR/operator.pid"
for _ in $(seq 60); do
  curl -fsS "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -fsS "http://127.0.0.1:$admin_port/readyz" >/dev/null || die "the operator did not become ready; see $DEMO_DIR/operator.log"

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

step "Keyless: a SasIssuer with workload identity and a grant, no account key in namespace $NAMESPACE-keyless"
keyless_ns="$NAMESPACE-keyless"
kubectl create namespace "$keyless_ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl create serviceaccount storage-signer -n "$keyless_ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
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
# The container is made with an admin bearer token (Azurite's --oauth basic checks the claims,
# not the signature); everything after goes through the operator's user delegation SAS.
admin_bearer=$(python3 - <<'PY'
import base64, json, time
part = lambda v: base64.urlsafe_b64encode(json.dumps(v).encode()).rstrip(b"=").decode()
now = int(time.time())
claims = {"aud": "https://storage.azure.com", "iss": "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/",
          "nbf": now - 300, "iat": now - 300, "exp": now + 3600,
          "oid": "6f1a3e0c-5b7d-4c2e-9a8f-0d1e2f3a4b5c", "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47"}
print(part({"alg": "RS256", "typ": "JWT"}) + "." + part(claims) + "." + part("unsigned"))
PY
)
curl -sS -o /dev/null --cacert "$AZURITE_OAUTH_CA_CERT" -X PUT -H 'x-ms-version: 2025-05-05' \
  -H "Authorization: Bearer $admin_bearer" "$AZURITE_OAUTH_BLOB_ENDPOINT/keyless?restype=container" || true
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
