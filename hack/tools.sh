#!/usr/bin/env bash
# Obtains every external component the tests need, each cached outside the repository
# (under $TESTENV_CACHE, keyed by the pins in hack/versions.env). Fast when the cache is warm.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

step() {
  local what="$1"; shift
  local started=$SECONDS
  "$@" || die "could not obtain $what (see the messages above); nothing was skipped"
  log "tools: $what ready ($((SECONDS - started)) s)"
}
step "kube-apiserver and kube-controller-manager $K8S_VERSION" "$HACK_DIR/build-kube.sh"
step "kubectl $K8S_VERSION" "$HACK_DIR/build-kubectl.sh"
step "etcd $ETCD_DEBIAN_VERSION" "$HACK_DIR/etcd.sh"
step "azurite $AZURITE_VERSION" "$HACK_DIR/azurite.sh"
command -v openssl >/dev/null || die "could not find openssl: the test environment uses it to make TLS and service-account keys (apt-get install openssl)"
command -v curl >/dev/null || die "could not find curl: the test environment uses it to wait for readiness (apt-get install curl)"
