#!/usr/bin/env bash
# Obtains every external component the tests need, each cached outside the repository.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
"$HACK_DIR/build-kube.sh"
