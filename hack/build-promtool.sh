#!/usr/bin/env bash
# Builds promtool at PROMTOOL_MODULE_VERSION (github.com/prometheus/prometheus) from the Go
# module proxy. Output: $TESTENV_CACHE/promtool/$PROMTOOL_MODULE_VERSION/bin/promtool; kept if
# already there. tests/monitoring.rs finds it through `hack/build-promtool.sh --path`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

out_bin="$TESTENV_CACHE/promtool/$PROMTOOL_MODULE_VERSION/bin"
if [[ "${1:-}" == "--path" ]]; then
  echo "$out_bin/promtool"
  exit 0
fi
[[ -x "$out_bin/promtool" ]] && exit 0
command -v go >/dev/null || die "go is not installed; it is needed to build promtool $PROMTOOL_MODULE_VERSION"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# v0.3YY.Z is Prometheus 3.YY.Z: the version promtool prints.
release="${PROMTOOL_MODULE_VERSION#v0.}"
release="3.$((10#${release:1:2})).${release#*.}"
log "promtool $PROMTOOL_MODULE_VERSION (Prometheus $release): building from the Go module proxy (first time on 2 cores: minutes)"
# Prometheus 3.16's go.mod asks for Go 1.26.7, newer than Kubernetes needs (hack/go.sh): with
# GOTOOLCHAIN=auto an older Go fetches that toolchain from the same module proxy.
GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=auto GOBIN="$work" with_heartbeat "build promtool" \
  go install -trimpath -ldflags "-s -w -X github.com/prometheus/common/version.Version=$release" \
  "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_MODULE_VERSION"
mkdir -p "$out_bin"
# Same filesystem move: a reader never sees a half-written binary.
mv "$work/promtool" "$out_bin/.promtool.tmp" 2>/dev/null || cp "$work/promtool" "$out_bin/.promtool.tmp"
mv "$out_bin/.promtool.tmp" "$out_bin/promtool"
log "promtool: $("$out_bin/promtool" --version 2>&1 | head -1) in $out_bin"
