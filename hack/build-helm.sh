#!/usr/bin/env bash
# Builds helm at HELM_VERSION (helm.sh/helm/v3) from the Go module proxy. Output:
# $TESTENV_CACHE/helm/$HELM_VERSION/bin/helm; kept if already there. tests/helm.rs finds it
# through `hack/build-helm.sh --path`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

out_bin="$TESTENV_CACHE/helm/$HELM_VERSION/bin"
if [[ "${1:-}" == "--path" ]]; then
  echo "$out_bin/helm"
  exit 0
fi
[[ -x "$out_bin/helm" ]] && exit 0
command -v go >/dev/null || die "go is not installed; it is needed to build helm $HELM_VERSION"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
log "helm $HELM_VERSION: building from the Go module proxy (first time on 2 cores: minutes)"
# The version helm prints (`helm version`) is set at link time, as helm's own Makefile does.
GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=auto GOBIN="$work" with_heartbeat "build helm" \
  go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
  "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
mkdir -p "$out_bin"
# Same filesystem move: a reader never sees a half-written binary.
mv "$work/helm" "$out_bin/.helm.tmp" 2>/dev/null || cp "$work/helm" "$out_bin/.helm.tmp"
mv "$out_bin/.helm.tmp" "$out_bin/helm"
log "helm: $("$out_bin/helm" version --short 2>&1 | head -1) in $out_bin"
