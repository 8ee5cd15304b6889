#!/usr/bin/env bash
# Builds kubectl at K8S_VERSION from the Go module proxy, the same way hack/build-kube.sh
# builds the server (a wrapper module re-stating the staging `replace` lines). Debian's kubectl
# (1.32 in trixie) is two minors from the 1.34 server, outside kubectl's +-1 skew policy.
# Output: $TESTENV_CACHE/kubectl/$K8S_VERSION/bin/kubectl.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

out="$TESTENV_CACHE/kubectl/$K8S_VERSION"
[[ -x "$out/bin/kubectl" ]] && exit 0
command -v go >/dev/null || die "go is not installed; it is needed to build kubectl $K8S_VERSION"

staging_version="v0.${K8S_VERSION#v1.}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local

log "kubectl $K8S_VERSION: reading k8s.io/kubernetes go.mod from the module proxy"
gomod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
[[ -f "$gomod" ]] || die "could not download k8s.io/kubernetes@$K8S_VERSION from the Go module proxy"
go_line="$(grep -m1 '^go ' "$gomod")"
godebug_line="$(grep -m1 '^godebug ' "$gomod" || true)"
mapfile -t staging < <(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod")
(( ${#staging[@]} > 20 )) || die "found only ${#staging[@]} staging modules in $gomod"

{
  echo "module sas-operator.local/kubebuild"
  echo
  echo "$go_line"
  [[ -n "$godebug_line" ]] && echo "$godebug_line"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  echo "replace ("
  for m in "${staging[@]}"; do echo "	$m => $m $staging_version"; done
  echo ")"
} > "$work/go.mod"

minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
ldflags="-s -w -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
ldflags+=" -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
ldflags+=" -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"

cd "$work"
log "kubectl $K8S_VERSION: resolving modules"
with_heartbeat "resolve kubectl modules" go list -deps k8s.io/kubernetes/cmd/kubectl >/dev/null
log "kubectl $K8S_VERSION: building (first time on 2 cores: several minutes)"
with_heartbeat "build kubectl" go build -trimpath -ldflags "$ldflags" -o "$work/kubectl" k8s.io/kubernetes/cmd/kubectl
mkdir -p "$out/bin"
mv "$work/kubectl" "$out/bin/kubectl.tmp" && mv "$out/bin/kubectl.tmp" "$out/bin/kubectl"
log "kubectl $K8S_VERSION: built into $out/bin"
