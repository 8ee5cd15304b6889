#!/usr/bin/env bash
# Builds kube-apiserver and kube-controller-manager from the Go module proxy.
# k8s.io/kubernetes requires its staging modules at v0.0.0 through `replace` lines that Go
# ignores in a dependency, so a wrapper module re-states those replaces at the matching
# published version (v0.Y.Z for v1.Y.Z). Output: $TESTENV_CACHE/kubernetes/$K8S_VERSION/bin.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

out="$TESTENV_CACHE/kubernetes/$K8S_VERSION"
if [[ -x "$out/bin/kube-apiserver" && -x "$out/bin/kube-controller-manager" ]]; then
  exit 0
fi
command -v go >/dev/null || die "go is not installed; it is needed to build kube-apiserver $K8S_VERSION"

staging_version="v0.${K8S_VERSION#v1.}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local

log "kubernetes $K8S_VERSION: reading its go.mod from the module proxy"
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
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"

cd "$work"
log "kubernetes $K8S_VERSION: resolving modules (first time: a few minutes)"
with_heartbeat "resolve modules" go list -deps k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager >/dev/null
mkdir -p "$work/bin"
for cmd in kube-apiserver kube-controller-manager; do
  log "kubernetes $K8S_VERSION: building $cmd (first time on 2 cores: tens of minutes)"
  with_heartbeat "build $cmd" go build -trimpath -ldflags "$ldflags" -o "$work/bin/$cmd" "k8s.io/kubernetes/cmd/$cmd"
done
mkdir -p "$out"
rm -rf "$out/bin.tmp" && mv "$work/bin" "$out/bin.tmp" && rm -rf "$out/bin" && mv "$out/bin.tmp" "$out/bin"
log "kubernetes $K8S_VERSION: built into $out/bin"
