# syntax=docker/dockerfile:1
# sas-operator image: a statically linked binary on an empty base, running as a non-root user.
#   docker build -t sas-operator:dev .
# The build stage runs, on the builder's host triple:
#   RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target <host> --bin sas-operator
# which also works outside Docker and yields the same static binary.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
# glibc's crt-static rather than musl: the official image ships no musl std for rustup's
# toolchain, and ring/rustls build their C and assembly against glibc's static libc as well.
# --target makes RUSTFLAGS apply to the binary only, not to build scripts and proc macros.
# The operator needs no name resolution in a cluster (KUBERNETES_SERVICE_HOST is an IP), so
# static glibc's NSS caveat does not apply.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    set -eux; \
    target="$(rustc -vV | sed -n 's/^host: //p')"; \
    RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --locked --target "$target" --bin sas-operator; \
    cp "target/$target/release/sas-operator" /sas-operator; \
    if readelf -l /sas-operator | grep -q 'Requesting program interpreter'; then \
        echo "sas-operator is dynamically linked" >&2; exit 1; \
    fi; \
    /sas-operator --version

# The runtime image holds the binary and CA roots only. The in-cluster client trusts the
# service account's ca.crt; the roots serve a kubeconfig whose server has a public certificate.
FROM scratch
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=builder /sas-operator /sas-operator
# 65532: distroless' "nonroot"; numeric so that runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/sas-operator", "run"]
