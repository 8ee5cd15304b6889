#!/usr/bin/env bash
# Obtains every external component the tests need, each cached outside the repository
# (under $TESTENV_CACHE, keyed by the pins in hack/versions.env). Fast when the cache is warm.
# On a fresh Debian machine it also installs the few system packages it relies on.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

step() {
  local what="$1"; shift
  local started=$SECONDS
  "$@" || die "could not obtain $what (see the messages above); nothing was skipped"
  log "tools: $what ready ($((SECONDS - started)) s)"
}

# System commands, installed from Debian's own packages when missing.
apt_install() {
  local sudo=()
  (( EUID == 0 )) || sudo=(sudo)
  command -v apt-get >/dev/null || die "$* missing and this is not a Debian-based machine; install them"
  log "tools: installing $* with apt-get"
  "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq "$@" >/dev/null \
    || die "apt-get install $* failed"
}
missing=()
for tool in curl openssl setsid dpkg-deb gcc; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if (( ${#missing[@]} )); then
  packages=()
  for tool in "${missing[@]}"; do
    case "$tool" in
      setsid) packages+=(util-linux) ;;
      dpkg-deb) packages+=(dpkg) ;;
      gcc) packages+=(gcc libc6-dev) ;; # the node's pause program, linked statically
      *) packages+=("$tool") ;;
    esac
  done
  apt_install "${packages[@]}"
fi
command -v npm >/dev/null || apt_install nodejs npm

# Go is needed only while the Kubernetes binaries or promtool are not cached yet.
# (The node's consumer image is a Go program too; hack/node-images.sh finds Go itself.)
if [[ ! -x "$TESTENV_CACHE/kubernetes/$K8S_VERSION/bin/kube-controller-manager" \
   || ! -x "$TESTENV_CACHE/kubernetes/$K8S_VERSION/bin/kubelet" \
   || ! -x "$TESTENV_CACHE/kubernetes/$K8S_VERSION/bin/kube-scheduler" \
   || ! -x "$TESTENV_CACHE/kubectl/$K8S_VERSION/bin/kubectl" \
   || ! -x "$("$HACK_DIR/build-promtool.sh" --path)" ]]; then
  gobin="$("$HACK_DIR/go.sh")" || die "could not obtain a Go toolchain (needed to build Kubernetes $K8S_VERSION and promtool)"
  export PATH="$gobin:$PATH"
fi

step "kube-apiserver and kube-controller-manager $K8S_VERSION" "$HACK_DIR/build-kube.sh"
step "kubectl $K8S_VERSION" "$HACK_DIR/build-kubectl.sh"
step "promtool $PROMTOOL_MODULE_VERSION" "$HACK_DIR/build-promtool.sh"
step "etcd $ETCD_DEBIAN_VERSION" "$HACK_DIR/etcd.sh"
step "azurite $AZURITE_VERSION" "$HACK_DIR/azurite.sh"
step "Entra ID emulator (jose $ENTRA_EMULATOR_JOSE_VERSION)" "$HACK_DIR/entra.sh"
step "Azure SDK oracles (PyPI, npm)" "$HACK_DIR/oracles.sh"
# The worker node's parts are obtained everywhere (they are cached files, nothing runs);
# whether the node can run here is decided when it starts.
step "worker node: containerd, runc, CNI plugins, kubelet, kube-scheduler, images" "$HACK_DIR/node-tools.sh"
