#!/usr/bin/env bash
# Obtains the parts of the test environment's worker node, cached by version:
#   - containerd, runc and the CNI plugins from the machine's Debian release (pinned in
#     versions.env), downloaded with `apt-get download` and extracted, never installed (no
#     service start, nothing on the host changes): $TESTENV_CACHE/node/<versions>/
#   - kubelet and kube-scheduler at K8S_VERSION, built like the apiserver (lib.sh
#     build_kubernetes): $TESTENV_CACHE/kubernetes/$K8S_VERSION/bin
#   - the images the node needs without a registry (hack/node-images.sh).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

out="$(node_parts_dir)"
if [[ ! -x "$out/usr/bin/containerd" ]]; then
  command -v apt-get >/dev/null || die "node: apt-get is missing; the node's containerd, runc and CNI plugins come from Debian packages"
  packages=(
    "containerd=$CONTAINERD_DEBIAN_VERSION"
    "runc=$RUNC_DEBIAN_VERSION"
    "containernetworking-plugins=$CNI_PLUGINS_DEBIAN_VERSION"
  )
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  chmod 755 "$work" # apt's _apt sandbox user must be able to write the .debs here
  if ! (cd "$work" && apt-get download -qq "${packages[@]}" >/dev/null 2>&1); then
    sudo=()
    (( EUID == 0 )) || sudo=(sudo)
    log "node: apt-get update (to see ${packages[*]})"
    with_heartbeat "apt-get update" "${sudo[@]}" apt-get update -qq -o DPkg::Lock::Timeout=300 \
      || die "node: apt-get update failed"
    (cd "$work" && apt-get download -qq "${packages[@]}" 2>&1 | grep -v 'W: Download is performed unsandboxed' >&2 || true)
  fi
  for deb in containerd runc containernetworking-plugins; do
    ls "$work/${deb}"_*.deb >/dev/null 2>&1 \
      || die "node: apt-get download ${packages[*]} failed (versions gone? see 'apt-cache madison $deb')"
  done
  for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
  for binary in usr/bin/containerd usr/bin/containerd-shim-runc-v2 usr/bin/ctr usr/sbin/runc usr/lib/cni/bridge usr/lib/cni/host-local usr/lib/cni/loopback; do
    [[ -x "$work/root/$binary" ]] || die "node: the packages have no $binary"
  done
  "$work/root/usr/sbin/runc" --version >/dev/null || die "node: the extracted runc does not run here (libseccomp2 missing?)"
  mkdir -p "$(dirname "$out")"
  rm -rf "$out" && mv "$work/root" "$out"
  log "node: containerd $CONTAINERD_DEBIAN_VERSION, runc $RUNC_DEBIAN_VERSION, CNI plugins $CNI_PLUGINS_DEBIAN_VERSION in $out"
fi

build_kubernetes "$TESTENV_CACHE/kubernetes/$K8S_VERSION/bin" kubelet kube-scheduler
"$HACK_DIR/node-images.sh" >/dev/null
