#!/usr/bin/env bash
# Installs the pinned Azurite (Azure Storage emulator) from npm into the versioned cache.
# Output: $TESTENV_CACHE/azurite/$AZURITE_VERSION/node_modules/.bin/azurite.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

out="$TESTENV_CACHE/azurite/$AZURITE_VERSION"
[[ -x "$out/node_modules/.bin/azurite" ]] && exit 0
command -v node >/dev/null || die "azurite: node is not installed (Azurite $AZURITE_VERSION needs Node.js >= 20; e.g. apt-get install nodejs)"
command -v npm >/dev/null || die "azurite: npm is not installed (it installs Azurite $AZURITE_VERSION from npm's configured registry)"

tmp="$out.tmp"
rm -rf "$tmp" && mkdir -p "$tmp"
log "azurite: npm install azurite@$AZURITE_VERSION (about a minute the first time)"
with_heartbeat "npm install azurite" npm install --prefix "$tmp" --no-audit --no-fund --omit=dev \
  --ignore-scripts --loglevel=error "azurite@$AZURITE_VERSION" >&2 \
  || die "azurite: npm install azurite@$AZURITE_VERSION failed (is npm's registry $(npm config get registry) reachable?)"
installed="$("$tmp/node_modules/.bin/azurite" --version)" || die "azurite: the installed azurite does not run with node $(node --version)"
[[ "$installed" == "$AZURITE_VERSION" ]] || die "azurite: asked for $AZURITE_VERSION, npm installed $installed"
rm -rf "$out" && mv "$tmp" "$out"
log "azurite: $AZURITE_VERSION installed into $out"
