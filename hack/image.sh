#!/usr/bin/env bash
# The operator image without Docker: the same static binary as the Dockerfile's build stage
# and the same runtime contents as its final stage (scratch, the CA bundle, /sas-operator,
# USER 65532:65532, EXPOSE 8080, ENTRYPOINT ["/sas-operator", "run"]), as a docker-archive tar
# that `ctr images import` (or `docker load`) reads. tests/image.rs keeps the two in agreement.
#
#   hack/image.sh    builds target/image/sas-operator.tar; prints its image reference,
#                    sas-operator.local/sas-operator:<first 16 hex of the binary's SHA-256>
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

out_dir="$REPO_ROOT/target/image"
ca_bundle=/etc/ssl/certs/ca-certificates.crt
[[ -f "$ca_bundle" ]] || die "image: $ca_bundle missing (Debian: apt-get install ca-certificates)"

# Run from a test (`cargo test` exports its package's CARGO_PKG_*, CARGO_MANIFEST_DIR, ...),
# those variables would differ from a shell's, and build scripts that watch them (ring's)
# would make every alternation a full rebuild. The Dockerfile's build has none of them.
while read -r var; do unset "$var"; done < <(compgen -e \
  | grep -E '^(CARGO_(MANIFEST_|PKG_|CRATE_|BIN_|TARGET_TMPDIR|PRIMARY_PACKAGE|CFG_|RUSTC_CURRENT_DIR)|OUT_DIR$)' || true)

# As the Dockerfile's build stage does it, on this machine's host triple.
target="$(rustc -vV | sed -n 's/^host: //p')"
log "image: cargo build --release --target $target (static; the first time takes minutes)"
(cd "$REPO_ROOT" && RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --quiet --release --locked --target "$target" --bin sas-operator) \
  || die "image: cargo build failed"
binary="$REPO_ROOT/target/$target/release/sas-operator"
if command -v readelf >/dev/null && readelf -l "$binary" | grep -q 'Requesting program interpreter'; then
  die "image: $binary is dynamically linked"
fi
"$binary" --version >/dev/null || die "image: $binary does not run"

tag="$(sha256sum "$binary" | cut -c1-16)"
ref="sas-operator.local/sas-operator:$tag"
if [[ ! -f "$out_dir/sas-operator.tar" || "$(cat "$out_dir/ref" 2>/dev/null)" != "$ref" ]]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  install -D -m 0644 "$ca_bundle" "$work/rootfs/etc/ssl/certs/ca-certificates.crt"
  install -D -m 0755 "$binary" "$work/rootfs/sas-operator"
  # The config BuildKit writes for the Dockerfile's final stage (PATH is its default).
  make_image_tar "$ref" "$work/rootfs" "$out_dir/sas-operator.tar" \
    '{"User":"65532:65532","ExposedPorts":{"8080/tcp":{}},"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Entrypoint":["/sas-operator","run"]}'
  echo "$ref" >"$out_dir/ref"
  log "image: $ref in $out_dir/sas-operator.tar"
fi
echo "$ref"
