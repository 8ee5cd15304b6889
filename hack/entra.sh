#!/usr/bin/env bash
# Installs the one npm package the Entra ID token endpoint emulator (hack/entra-emulator.mjs)
# uses, `jose` at the pinned version (it has no dependencies), into the versioned cache.
# Output: $TESTENV_CACHE/entra-emulator/jose-$ENTRA_EMULATOR_JOSE_VERSION/node_modules/jose.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

out="$TESTENV_CACHE/entra-emulator/jose-$ENTRA_EMULATOR_JOSE_VERSION"
[[ -f "$out/.complete" ]] && exit 0
command -v node >/dev/null || die "entra emulator: node is not installed (e.g. apt-get install nodejs)"
command -v npm >/dev/null || die "entra emulator: npm is not installed (it installs jose $ENTRA_EMULATOR_JOSE_VERSION from the npm registry)"

tmp="$out.tmp"
rm -rf "$tmp" && mkdir -p "$tmp"
log "entra emulator: npm install jose@$ENTRA_EMULATOR_JOSE_VERSION"
with_heartbeat "npm install jose" npm install --prefix "$tmp" --no-audit --no-fund --omit=dev \
  --ignore-scripts --loglevel=error "jose@$ENTRA_EMULATOR_JOSE_VERSION" >&2 \
  || die "entra emulator: npm install jose@$ENTRA_EMULATOR_JOSE_VERSION failed (is the npm registry reachable?)"
installed="$(node -p "require('$tmp/node_modules/jose/package.json').version")"
[[ "$installed" == "$ENTRA_EMULATOR_JOSE_VERSION" ]] || die "entra emulator: asked for jose $ENTRA_EMULATOR_JOSE_VERSION, npm installed $installed"
# jose declares no dependencies; anything else in node_modules would be an unpinned surprise.
extra="$(ls "$tmp/node_modules" | grep -vx jose || true)"
[[ -z "$extra" ]] || die "entra emulator: npm installed more than jose: $extra"
touch "$tmp/.complete"
rm -rf "$out" && mv "$tmp" "$out"
log "entra emulator: jose $ENTRA_EMULATOR_JOSE_VERSION installed into $out"
