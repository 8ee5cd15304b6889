#!/usr/bin/env bash
# Builds kube-apiserver and kube-controller-manager at K8S_VERSION from the Go module proxy
# (see build_kubernetes in lib.sh). Output: $TESTENV_CACHE/kubernetes/$K8S_VERSION/bin.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
build_kubernetes "$TESTENV_CACHE/kubernetes/$K8S_VERSION/bin" kube-apiserver kube-controller-manager
