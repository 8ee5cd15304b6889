#!/usr/bin/env bash
# Obtains etcd from Debian trixie's etcd-server package: downloaded with `apt-get download`
# and extracted with `dpkg-deb -x`, never installed (no service start, no system upgrade).
# The trixie sources entry is pinned at priority 100 so nothing on the machine upgrades to it.
# Output: $TESTENV_CACHE/etcd/$ETCD_DEBIAN_VERSION/bin/etcd.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

out="$TESTENV_CACHE/etcd/$ETCD_DEBIAN_VERSION"
[[ -x "$out/bin/etcd" ]] && exit 0
command -v apt-get >/dev/null || die "etcd: apt-get is missing; this script needs a Debian-based machine"
command -v dpkg-deb >/dev/null || die "etcd: dpkg-deb is missing"

sudo=()
(( EUID == 0 )) || sudo=(sudo)
sources=/etc/apt/sources.list.d/sas-operator-trixie.sources
pin=/etc/apt/preferences.d/sas-operator-trixie
# Trixie from the same archive (or mirror) the machine's own Debian source names.
archive="$(debian_archive_uri)"
wanted_sources="$(printf '%s\n' 'Types: deb' "URIs: $archive" 'Suites: trixie' \
  'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg')"
if [[ ! -f "$sources" || ! -f "$pin" || "$(cat "$sources")" != "$wanted_sources" ]]; then
  log "etcd: adding a Debian trixie apt source ($archive), pinned at priority 100 (nothing upgrades to it)"
  echo "$wanted_sources" | "${sudo[@]}" tee "$sources" >/dev/null
  printf '%s\n' 'Package: *' 'Pin: release n=trixie' 'Pin-Priority: 100' \
    | "${sudo[@]}" tee "$pin" >/dev/null
fi
if ! apt-cache madison etcd-server 2>/dev/null | awk -F'|' '{gsub(/ /, "", $2); print $2}' | grep -qxF "$ETCD_DEBIAN_VERSION"; then
  log "etcd: apt-get update (to see trixie's etcd-server $ETCD_DEBIAN_VERSION)"
  with_heartbeat "apt-get update" "${sudo[@]}" apt-get update -qq \
    || die "etcd: apt-get update failed (is $archive reachable?)"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chmod 755 "$work" # apt's _apt sandbox user must be able to write the .deb here
log "etcd: downloading etcd-server $ETCD_DEBIAN_VERSION"
(cd "$work" && apt-get download -qq "etcd-server=$ETCD_DEBIAN_VERSION" 2>&1 | grep -v 'W: Download is performed unsandboxed' >&2 || true)
deb="$(ls "$work"/etcd-server_*.deb 2>/dev/null | head -1)"
[[ -f "$deb" ]] || die "etcd: apt-get download etcd-server=$ETCD_DEBIAN_VERSION failed (version not in trixie any more? see 'apt-cache madison etcd-server')"
dpkg-deb -x "$deb" "$work/root"
[[ -x "$work/root/usr/bin/etcd" ]] || die "etcd: $deb has no usr/bin/etcd"
"$work/root/usr/bin/etcd" --version >/dev/null || die "etcd: the extracted binary does not run on this machine"
mkdir -p "$out"
rm -rf "${out:?}/bin" "$out/bin.tmp" && mkdir "$out/bin.tmp" && mv "$work/root/usr/bin/etcd" "$out/bin.tmp/etcd" && mv "$out/bin.tmp" "$out/bin"
log "etcd: $("$out/bin/etcd" --version | head -1) extracted into $out/bin"
