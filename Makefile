# The README's commands. `make test` works on a fresh machine: it installs what is missing
# (cached outside the repo, keyed by version), then runs unit and integration tests.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo

.PHONY: all build test tools testenv testenv-down lint fmt crds bench bench-scale demo demo-down

all: build

build:
	$(CARGO) build --release

## Obtain the control plane, Azurite and the SDK oracles (slow only the first time).
tools:
	hack/tools.sh

## Unit and integration tests; each integration test binary starts its own control plane and
## Azurite (tests/common), so no `make testenv` is needed first.
test: tools
	source hack/env.sh && $(CARGO) test --all-targets --no-fail-fast

## A control plane, Azurite (HTTP, and HTTPS with OAuth) and the Entra ID emulator in the
## background; `source target/testenv/env.sh` to use them.
testenv: tools
	hack/testenv.sh up control-plane azurite azurite-oauth entra

testenv-down:
	hack/testenv.sh down

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

crds:
	$(CARGO) run --quiet -- crd > crds/sasgrant.yaml

bench:
	$(CARGO) bench --bench signer

## The scale benchmark (README "Scale"): N grants (SCALE_N, default 1000; for 10000 see benches/scale.rs)
## on `make testenv`'s control plane, the operator release build under deploy/'s RBAC.
## SAS_OPERATOR_BIN measures another build of the operator (e.g. an older commit's).
bench-scale: testenv
	source target/testenv/env.sh && $(CARGO) bench --bench scale

## The local demo: control plane, Azurite, the operator, examples/, and a blob round trip.
demo:
	hack/demo.sh

demo-down:
	hack/demo.sh down
