#!/usr/bin/env bash
# Packages `kubectl sas` for krew (linux/amd64): the release archive, and deploy/krew/sas.yaml
# with the download URL and the archive's sha256 filled in. Both land in $KREW_OUT_DIR
# (default target/krew/); the committed manifest keeps its placeholders.
#
#   hack/krew-release.sh OWNER [BINARY]
#
# OWNER: the GitHub owner the release is published under (the manifest's URLs name it; the
# archive is the release asset kubectl-sas-linux-amd64.tar.gz of tag vX.Y.Z).
# BINARY: default, `cargo build --release --locked --bin kubectl-sas`. Linked against glibc
# dynamically, unlike the operator's image: the plugin resolves the API server's host name,
# which static glibc can only do with the host's NSS libraries of the same glibc version.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

owner="${1:-}"
[[ "$owner" =~ ^[A-Za-z0-9][A-Za-z0-9-]*$ ]] || die "krew-release: usage: hack/krew-release.sh OWNER [BINARY]"
binary="${2:-}"
out_dir="${KREW_OUT_DIR:-$REPO_ROOT/target/krew}"
manifest="$REPO_ROOT/deploy/krew/sas.yaml"

version="v$(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO_ROOT/Cargo.toml" | head -1)"
grep -q "^  version: $version\$" "$manifest" \
  || die "krew-release: $manifest does not say version $version (Cargo.toml's)"

if [[ -z "$binary" ]]; then
  log "krew-release: cargo build --release --bin kubectl-sas"
  (cd "$REPO_ROOT" && cargo build --quiet --release --locked --bin kubectl-sas) \
    || die "krew-release: cargo build failed"
  binary="$REPO_ROOT/target/release/kubectl-sas"
fi
"$binary" --version >/dev/null || die "krew-release: $binary does not run"

# Reproducible: fixed order, owner and time, and gzip without a name or time stamp.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
install -m 0755 "$binary" "$work/kubectl-sas"
mkdir -p "$out_dir"
archive="$out_dir/kubectl-sas-linux-amd64.tar.gz"
tar -C "$work" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - kubectl-sas \
  | gzip -n -9 >"$archive"
sha256="$(sha256sum "$archive" | cut -d' ' -f1)"

# The header comment explains the placeholders, which are gone in the filled-in copy.
sed -e '/^#/d' \
    -e "s|OWNER|$owner|g" \
    -e "s|sha256: \"0\{64\}\"|sha256: \"$sha256\"|" \
    "$manifest" >"$out_dir/sas.yaml"
grep -q "sha256: \"$sha256\"" "$out_dir/sas.yaml" || die "krew-release: the sha256 placeholder is gone from $manifest"
log "krew-release: $archive (sha256 $sha256), manifest $out_dir/sas.yaml"
echo "$out_dir/sas.yaml"
