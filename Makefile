# The commands of README.md and CONTRIBUTING.md. `make test` works on a fresh machine: it installs what is missing
# (cached outside the repo, keyed by version), then runs unit and integration tests.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo

.PHONY: all build test tools testenv testenv-down lint fmt crds bench bench-scale demo demo-down image

all: build

build:
	$(CARGO) build --release

## Obtain the control plane, Azurite and the SDK oracles (slow only the first time).
tools:
	hack/tools.sh

## Unit and integration tests; each integration test binary starts its own control plane and
## Azurite (tests/common), so no `make testenv` is needed first. tests/node.rs needs a worker
## node (root on Linux): where it cannot run, it is left out with a message; in CI it always runs.
NODE_UNSUPPORTED = $(shell bash -c 'source hack/lib.sh && source hack/node.sh && node_unsupported_reason')
INTEGRATION_TESTS = $(basename $(notdir $(wildcard tests/*.rs)))
test: tools
	@if [[ -n "$(NODE_UNSUPPORTED)" && -n "$${CI:-}" ]]; then echo "error: $(NODE_UNSUPPORTED); CI runs tests/node.rs" >&2; exit 1; fi
	@if [[ -n "$(NODE_UNSUPPORTED)" ]]; then echo "NOTE: tests/node.rs, tests/node_teardown.rs and tests/helm_install.rs left out: $(NODE_UNSUPPORTED). Everything else runs; run it as root on Linux: sudo make test" >&2; fi
	source hack/env.sh && $(CARGO) test --lib --bins --benches --no-fail-fast \
	  $(foreach t,$(if $(NODE_UNSUPPORTED),$(filter-out node node_teardown helm_install,$(INTEGRATION_TESTS)),$(INTEGRATION_TESTS)),--test $(t))

## A control plane, Azurite (HTTP, and HTTPS with OAuth), the Entra ID emulator and a worker
## node in the background (the node where it can run: root on Linux);
## `source target/testenv/env.sh` to use them.
testenv: tools
	@if [[ -n "$(NODE_UNSUPPORTED)" ]]; then echo "NOTE: no worker node: $(NODE_UNSUPPORTED)" >&2; fi
	hack/testenv.sh up control-plane azurite azurite-oauth entra $(if $(NODE_UNSUPPORTED),,node)

testenv-down:
	hack/testenv.sh down

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

crds:
	mkdir -p charts/sas-operator/templates/crds
	$(CARGO) run --quiet -- crd --output-dir crds --chart-templates-dir charts/sas-operator/templates/crds

## The operator image without Docker (docker-archive tar in target/image/; see hack/image.sh).
image:
	hack/image.sh

bench:
	$(CARGO) bench --bench signer

## The scale benchmark (docs/scale.md): N grants (SCALE_N, default 1000; SCALE_RUNS cold starts
## interleaved with bare-client baselines; for 10000 and the other knobs see benches/scale.rs) on
## the test control plane (started if needed; it needs no Azurite or node), the operator release
## build under deploy/'s RBAC. SAS_OPERATOR_BIN measures another build (e.g. an older commit's).
bench-scale: tools
	hack/testenv.sh up control-plane
	source target/testenv/env.sh && $(CARGO) bench --bench scale

## The local demo: control plane, Azurite, the operator, examples/, and a blob round trip.
demo:
	hack/demo.sh

demo-down:
	hack/demo.sh down
