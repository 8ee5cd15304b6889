#!/usr/bin/env bash
# Prints the directory of a Go toolchain new enough to build K8S_VERSION: the machine's own
# `go` if it is, else golang.org/toolchain@v0.0.1-go$GO_TOOLCHAIN_VERSION from the Go module
# proxy, unpacked into $TESTENV_CACHE/go/$GO_TOOLCHAIN_VERSION.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

required=1.24 # `go` line of k8s.io/kubernetes v1.34's go.mod
version_at_least() { [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" == "$2" ]]; }

if command -v go >/dev/null; then
  have="$(go env GOVERSION 2>/dev/null)"; have="${have#go}"
  if version_at_least "$have" "$required"; then
    dirname "$(command -v go)"
    exit 0
  fi
  log "go: the machine's Go $have is older than $required"
fi

out="$TESTENV_CACHE/go/$GO_TOOLCHAIN_VERSION"
if [[ ! -x "$out/bin/go" ]]; then
  case "$(uname -m)" in
    x86_64) arch=amd64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) die "go: no Go toolchain for $(uname -m)" ;;
  esac
  # The module proxy this machine is configured with: `go env GOPROXY` of an older Go, else
  # $GOPROXY; its first URL entry (entries are separated by , or |; skip direct and off).
  proxies="$(command -v go >/dev/null && go env GOPROXY 2>/dev/null || echo "${GOPROXY:-}")"
  proxy="$(tr ',|' '\n\n' <<<"$proxies" | grep -m1 -E '^(https?|file)://' || true)"
  [[ -n "$proxy" ]] || die "go: no Go installed and no Go module proxy configured; install Go >= $required, or set GOPROXY to your module proxy's URL"
  proxy="${proxy%/}"
  url="$proxy/golang.org/toolchain/@v/v0.0.1-go$GO_TOOLCHAIN_VERSION.linux-$arch.zip"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  log "go: downloading Go $GO_TOOLCHAIN_VERSION from the Go module proxy $proxy"
  curl -fsSL --retry 3 -o "$work/go.zip" "$url" || die "go: could not download $url"
  if command -v unzip >/dev/null; then
    unzip -q "$work/go.zip" -d "$work/x"
  else
    python3 -m zipfile -e "$work/go.zip" "$work/x" || die "go: need unzip or python3 to unpack the toolchain"
  fi
  gobin="$(find "$work/x" -path '*/bin/go' -type f | head -1)"
  [[ -n "$gobin" ]] || die "go: the toolchain zip has no bin/go"
  root="$(cd "$(dirname "$gobin")/.." && pwd)"
  [[ -f "$root/bin/go" ]] || die "go: the toolchain zip has no bin/go"
  chmod +x "$root/bin/"* "$root"/pkg/tool/*/* 2>/dev/null || true
  mkdir -p "$(dirname "$out")"
  rm -rf "$out" && mv "$root" "$out"
  "$out/bin/go" version >/dev/null || die "go: the downloaded toolchain does not run here"
  log "go: $("$out/bin/go" version) in $out"
fi
echo "$out/bin"
