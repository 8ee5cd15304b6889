# Shared helpers for hack/ scripts. Source it; it sets TESTENV_CACHE and loads the pins.
set -euo pipefail
HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HACK_DIR/.." && pwd)"
# shellcheck source=versions.env
source "$HACK_DIR/versions.env"
CACHE_ROOT="${SAS_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sas-operator}"
TESTENV_CACHE="$CACHE_ROOT/testenv"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The URI of the Debian archive this machine's apt already uses (a mirror, a proxy or the
# default), so an added suite goes through the same place: the source whose suite is this
# release's codename (not -security or -updates) with component main.
# SAS_OPERATOR_DEBIAN_URI overrides it.
debian_archive_uri() {
  if [[ -n "${SAS_OPERATOR_DEBIAN_URI:-}" ]]; then
    echo "$SAS_OPERATOR_DEBIAN_URI"
    return
  fi
  local codename uri
  codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
  [[ -n "$codename" ]] || die "cannot tell this machine's Debian codename from /etc/os-release; set SAS_OPERATOR_DEBIAN_URI to a Debian archive URI"
  uri="$(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 2>/dev/null \
    | awk -v suite="$codename" '$2 == suite && $3 == "main" { print $1; exit }')"
  [[ -n "$uri" ]] || die "no apt source for Debian $codename main found (apt-get indextargets); set SAS_OPERATOR_DEBIAN_URI to a Debian archive URI"
  echo "${uri%/}"
}

# Where hack/node-tools.sh extracts containerd, runc and the CNI plugins.
node_parts_dir() {
  echo "$TESTENV_CACHE/node/containerd-$CONTAINERD_DEBIAN_VERSION-runc-$RUNC_DEBIAN_VERSION-cni-$CNI_PLUGINS_DEBIAN_VERSION"
}

# Packs ROOTFS (a directory) into a single-layer image as a docker-archive tar, the format
# `ctr images import` reads; no registry and no Docker involved. Files are owned by root and
# timestamps are zeroed, so the same inputs give the same image id.
#   make_image_tar REF ROOTFS OUT CONFIG_JSON   (CONFIG_JSON: the image's "config" object)
make_image_tar() {
  local ref="$1" rootfs="$2" out="$3" config="$4" work arch diff_id config_id
  work="$(mktemp -d)"
  case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64 | arm64) arch=arm64 ;; *) arch="$(uname -m)" ;; esac
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$rootfs" -cf "$work/layer.tar" .
  diff_id="$(sha256sum "$work/layer.tar" | cut -d' ' -f1)"
  printf '{"architecture":"%s","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$arch" "$config" "$diff_id" >"$work/config.json"
  config_id="$(sha256sum "$work/config.json" | cut -d' ' -f1)"
  mkdir "$work/$diff_id"
  mv "$work/layer.tar" "$work/$diff_id/layer.tar"
  mv "$work/config.json" "$work/$config_id.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' \
    "$config_id" "$ref" "$diff_id" >"$work/manifest.json"
  mkdir -p "$(dirname "$out")"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work" \
    -cf "$out.tmp.$$" manifest.json "$config_id.json" "$diff_id/layer.tar"
  mv "$out.tmp.$$" "$out" # per-process name: two builds at once each replace the tar whole
  rm -rf "$work"
}

# Run a slow command, printing a heartbeat every 30 s so a long build never looks hung.
with_heartbeat() {
  local what="$1"; shift
  local started=$SECONDS
  "$@" &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 5
    if (( (SECONDS - started) % 30 < 5 )) && kill -0 "$pid" 2>/dev/null; then
      log "$what: still running ($((SECONDS - started)) s)"
    fi
  done
  wait "$pid"
}

# Builds Kubernetes commands (e.g. kube-apiserver, kubectl) at K8S_VERSION from the Go module
# proxy into OUT_BIN. k8s.io/kubernetes requires its staging modules at v0.0.0 through
# `replace` lines that Go ignores in a dependency, so a wrapper module re-states those replaces
# at the matching published version (v0.Y.Z for v1.Y.Z). Existing binaries are kept.
#   build_kubernetes OUT_BIN CMD...
build_kubernetes() {
  local out_bin="$1"; shift
  local missing=() cmd
  for cmd in "$@"; do [[ -x "$out_bin/$cmd" ]] || missing+=("$cmd"); done
  (( ${#missing[@]} )) || return 0
  command -v go >/dev/null || die "go is not installed; it is needed to build ${missing[*]} $K8S_VERSION"
  (
    export GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local
    local work gomod go_line godebug_line staging_version minor ldflags m
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    staging_version="v0.${K8S_VERSION#v1.}"
    log "kubernetes $K8S_VERSION: reading k8s.io/kubernetes go.mod from the module proxy"
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
    ldflags="-s -w"
    for m in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $m.gitVersion=$K8S_VERSION -X $m.gitMajor=1 -X $m.gitMinor=$minor"
    done

    cd "$work"
    log "kubernetes $K8S_VERSION: resolving modules (first time: a few minutes)"
    with_heartbeat "resolve modules" go list -deps "${missing[@]/#/k8s.io/kubernetes/cmd/}" >/dev/null
    mkdir -p "$out_bin"
    for cmd in "${missing[@]}"; do
      log "kubernetes $K8S_VERSION: building $cmd (first time on 2 cores: minutes)"
      with_heartbeat "build $cmd" go build -trimpath -ldflags "$ldflags" -o "$work/$cmd" "k8s.io/kubernetes/cmd/$cmd"
      # Same filesystem move: a reader never sees a half-written binary.
      mv "$work/$cmd" "$out_bin/.$cmd.tmp" 2>/dev/null || cp "$work/$cmd" "$out_bin/.$cmd.tmp"
      mv "$out_bin/.$cmd.tmp" "$out_bin/$cmd"
    done
    log "kubernetes $K8S_VERSION: ${missing[*]} built into $out_bin"
  )
}
