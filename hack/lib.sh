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
