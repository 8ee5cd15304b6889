#!/usr/bin/env bash
# Builds kubectl at K8S_VERSION from the Go module proxy, like the server (build_kubernetes in
# lib.sh). Debian's kubectl (1.32 in trixie) is two minors from the 1.34 server, outside
# kubectl's +-1 skew policy. Output: $TESTENV_CACHE/kubectl/$K8S_VERSION/bin/kubectl.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
if [[ "${1:-}" == "--path" ]]; then
  echo "$TESTENV_CACHE/kubectl/$K8S_VERSION/bin/kubectl"
  exit 0
fi
build_kubernetes "$TESTENV_CACHE/kubectl/$K8S_VERSION/bin" kubectl
