#!/usr/bin/env bash
# Builds the node's own images without a registry, as docker-archive tars that
# hack/testenv.sh imports into the node's containerd (make_image_tar in lib.sh):
#   pause     the pod sandbox: a tiny static C program (hack/node/pause.c)
#   consumer  a workload that reads the mounted Secret's sasUrl and uploads/downloads a blob
#             with it in a loop (hack/node/consumer, Go, static)
# Output: $TESTENV_CACHE/node-images/<source hash>/{pause,consumer}.tar and images.env with
# their references. Prints the directory.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

key="$(cat "$HACK_DIR/node/pause.c" "$HACK_DIR/node/consumer/go.mod" "$HACK_DIR/node/consumer/main.go" \
  "$HACK_DIR/lib.sh" | sha256sum | cut -c1-16)"
out="$TESTENV_CACHE/node-images/$key"
if [[ ! -f "$out/images.env" ]]; then
  command -v gcc >/dev/null || die "node images: gcc is needed to build the pause program (apt-get install gcc libc6-dev)"
  command -v go >/dev/null || PATH="$("$HACK_DIR/go.sh"):$PATH"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/pause" "$work/consumer" "$out"
  gcc -static -Os -s -o "$work/pause/pause" "$HACK_DIR/node/pause.c" \
    || die "node images: gcc -static failed (is libc6-dev installed?)"
  (cd "$HACK_DIR/node/consumer" && CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local \
    go build -trimpath -ldflags "-s -w" -o "$work/consumer/consumer" .) \
    || die "node images: building the consumer failed"
  pause_ref="sas-operator.local/pause:$key"
  consumer_ref="sas-operator.local/consumer:$key"
  make_image_tar "$pause_ref" "$work/pause" "$out/pause.tar" \
    '{"Entrypoint":["/pause"],"User":"65535:65535"}'
  make_image_tar "$consumer_ref" "$work/consumer" "$out/consumer.tar" \
    '{"Entrypoint":["/consumer"],"User":"65532:65532"}'
  printf '%s\n' "NODE_PAUSE_IMAGE=$pause_ref" "NODE_CONSUMER_IMAGE=$consumer_ref" >"$out/images.env"
  log "node images: pause and consumer built into $out"
fi
echo "$out"
