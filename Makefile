# Strata: the commands a developer and CI use. See README.md.
SHELL := /bin/bash
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: run build test lint fmt bench e2e helm-lint deps-build

# protoc is needed by tonic's code generation (our protos and etcd-client's).
deps-build:
	@command -v protoc >/dev/null 2>&1 || { \
	  echo "protoc not found: installing Debian's protobuf-compiler and libprotobuf-dev (needed to compile the gRPC protos)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends protobuf-compiler libprotobuf-dev >/dev/null \
	  || { echo "could not install protoc; install protobuf-compiler yourself and retry" >&2; exit 1; }; }

build: deps-build
	$(CARGO) build --release -p strata

# One process, every component, embedded defaults: HTTP 127.0.0.1:9009, gRPC 127.0.0.1:9095, data under ./data.
run: build
	mkdir -p data
	./target/release/strata -target=all -config.file=docs/examples/single-process.yaml

# Unit, conformance and integration tests. Integration tests start real Prometheus,
# vmagent (and later etcd, S3) processes; .ci/run installs them.
test: deps-build
	$(CARGO) build -p strata
	@echo "PromQL conformance (../shared/conformance/promql), pass counts per file and per feature group:"
	set -o pipefail; $(CARGO) test -q -p strata-promql --test conformance -- --nocapture 2>&1 | grep -v '^$$'
	$(CARGO) test --workspace --no-fail-fast

# No import cycles between the files of one crate (shared vocabulary lives in leaf
# modules); the crates still being untangled are in tools/modcycles-allow.txt.
lint: deps-build
	python3 tools/modcycles.py --check libs/*/src services/*/src integration/src benches/src
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Strata side by side with Prometheus and VictoriaMetrics (Debian packages, installed
# if missing): W1 x3 alternating systems, W2, Q; prints a Markdown table of medians
# (min-max). Knobs and workloads: docs/benchmarks.md. A smoke run:
#   BENCH_SCALE=0.1 BENCH_W1_ROUNDS=10 BENCH_RUNS=1 make bench
bench: deps-build
	bash benches/run.sh

# The Helm chart's checks (helm/tests/chart-test.sh): helm lint --strict, helm template
# for both modes and several value combinations, offline strict schema validation
# (kubernetes-validate), asserts on the rendered YAML, and `strata -config.verify` of
# the rendered config. `cargo test` runs the same script (integration/tests/helm_chart.rs).
# .ci/run installs helm and kubernetes-validate.
helm-lint: deps-build
	$(CARGO) build -p strata
	STRATA_BIN="$${CARGO_TARGET_DIR:-target}/debug/strata" bash helm/tests/chart-test.sh
