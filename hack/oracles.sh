#!/usr/bin/env bash
# Installs the SDK oracles of the SAS differential tests, cached outside the repository:
#   - a Python venv with the pinned azure-storage-blob/-queue/-file-share and azure-data-tables,
#   - @azure/storage-blob from npm (for signed versions the Python SDK cannot sign).
# Pins: hack/versions.env (ORACLE_*), tests/oracle/constraints.txt, tests/oracle/package-lock.json.
# The cache directory is keyed by a hash of all of them and of the Python and Node versions.
#
#   hack/oracles.sh              ensure installed (fast when warm)
#   hack/oracles.sh --print-env  ensure installed, then print SAS_ORACLE_PYTHON=... and
#                                SAS_ORACLE_NODE_PATH=... lines on stdout (for tests)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

print_env=false
case "${1:-}" in
  --print-env) print_env=true ;;
  "") ;;
  *) die "usage: hack/oracles.sh [--print-env]" ;;
esac

ORACLE_SRC="$REPO_ROOT/tests/oracle"
PYTHON="${SAS_ORACLE_BASE_PYTHON:-python3}"
command -v "$PYTHON" >/dev/null || die "oracles: $PYTHON not found (install Python >= 3.9, or set SAS_ORACLE_BASE_PYTHON)"
command -v node >/dev/null || die "oracles: node not found (install Node.js >= 20, e.g. apt-get install nodejs npm)"
command -v npm >/dev/null || die "oracles: npm not found (apt-get install npm)"

js_pin_in_package_json="$(sed -n 's/.*"@azure\/storage-blob": *"\([^"]*\)".*/\1/p' "$ORACLE_SRC/package.json")"
[[ "$js_pin_in_package_json" == "$ORACLE_JS_AZURE_STORAGE_BLOB" ]] ||
  die "oracles: tests/oracle/package.json pins @azure/storage-blob $js_pin_in_package_json but hack/versions.env says $ORACLE_JS_AZURE_STORAGE_BLOB; update both (and run npm install --package-lock-only there)"

python_version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
key="$(
  {
    grep '^ORACLE_' "$HACK_DIR/versions.env"
    cat "$ORACLE_SRC/constraints.txt" "$ORACLE_SRC/package-lock.json"
    echo "python=$python_version node=$node_major"
  } | sha256sum | cut -c1-16
)"
ORACLE_DIR="$CACHE_ROOT/oracles/$key"
VENV="$ORACLE_DIR/venv"
NODE_DIR="$ORACLE_DIR/node"

install_python() {
  log "oracles: creating venv for Python SDKs in $VENV"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" || die "oracles: python venv: '$PYTHON -m venv' failed (Debian: apt-get install python3-venv)"
  with_heartbeat "oracles: pip install" \
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-input \
    -c "$ORACLE_SRC/constraints.txt" \
    "azure-storage-blob==$ORACLE_PY_AZURE_STORAGE_BLOB" \
    "azure-storage-queue==$ORACLE_PY_AZURE_STORAGE_QUEUE" \
    "azure-storage-file-share==$ORACLE_PY_AZURE_STORAGE_FILE_SHARE" \
    "azure-data-tables==$ORACLE_PY_AZURE_DATA_TABLES" >&2 ||
    die "oracles: python SDKs: pip install from PyPI failed (see pip's message above)"
  "$VENV/bin/python" "$ORACLE_SRC/oracle.py" --versions >/dev/null ||
    die "oracles: python SDKs installed but tests/oracle/oracle.py cannot import them"
  touch "$VENV/.complete"
}

install_node() {
  log "oracles: installing @azure/storage-blob@$ORACLE_JS_AZURE_STORAGE_BLOB in $NODE_DIR"
  rm -rf "$NODE_DIR"
  mkdir -p "$NODE_DIR"
  cp "$ORACLE_SRC/package.json" "$ORACLE_SRC/package-lock.json" "$NODE_DIR/"
  # The SDK's engines field asks for Node 22; its SAS code runs on Node 20 (what Debian ships).
  with_heartbeat "oracles: npm ci" \
    npm ci --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error --engine-strict=false >&2 ||
    die "oracles: @azure/storage-blob: npm ci from the npm registry failed (see npm's message above)"
  NODE_PATH="$NODE_DIR/node_modules" node -e 'require("@azure/storage-blob").generateBlobSASQueryParameters' ||
    die "oracles: @azure/storage-blob installed but cannot be loaded by node $(node --version)"
  touch "$NODE_DIR/.complete"
}

mkdir -p "$ORACLE_DIR"
# Serialise concurrent callers (several test binaries may ask at once).
exec 9>"$ORACLE_DIR/.lock"
flock 9
if [[ -f "$VENV/.complete" ]]; then
  log "oracles: Python SDKs cached ($VENV)"
else
  install_python
fi
if [[ -f "$NODE_DIR/.complete" ]]; then
  log "oracles: JS SDK cached ($NODE_DIR)"
else
  install_node
fi
flock -u 9

if $print_env; then
  echo "SAS_ORACLE_PYTHON=$VENV/bin/python"
  echo "SAS_ORACLE_NODE_PATH=$NODE_DIR/node_modules"
fi
