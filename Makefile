# relance — developer entry points. `make help` lists them.

SHELL := /bin/bash
.DEFAULT_GOAL := help

RELANCE_CACHE_DIR ?= $(HOME)/.cache/relance
# One target folder outside the clone, shared by every checkout and CI run on this machine.
export CARGO_TARGET_DIR ?= $(RELANCE_CACHE_DIR)/target
export RELANCE_CACHE_DIR
NEXTEST_PROFILE ?= default

.PHONY: help
help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.PHONY: up
up: ## Start the local broker and PostgreSQL (idempotent), create topics, migrate.
	scripts/up.sh

.PHONY: down
down: ## Stop what `make up` started.
	scripts/down.sh

.PHONY: build
build: ## Build every binary.
	cargo build --workspace --bins

.PHONY: run
run: ## Run the four services locally (Ctrl-C stops them).
	scripts/install-deps.sh --no-browser
	cargo build --workspace --bins
	scripts/up.sh
	scripts/run.sh

.PHONY: fmt
fmt: ## Format the code.
	cargo fmt --all

.PHONY: lint
lint: ## Check formatting and clippy lints.
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

.PHONY: test
test: ## Install and bring up what the tests need; format check, clippy, every test, the short chaos run.
	scripts/install-deps.sh
	scripts/up.sh --no-migrate
	scripts/install-python-tools.sh
	scripts/check-deploy.sh
	source scripts/env.sh && "$$RELANCE_PYTHON" -m unittest discover -s scripts/tests
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	source scripts/env.sh && cargo nextest run --workspace --profile $(NEXTEST_PROFILE)
	cargo build --quiet --workspace --bins
	scripts/fuzz-admin-api.sh
	source scripts/env.sh && "$$RELANCE_PYTHON" scripts/chaos.py --short --build debug --require-prometheus

.PHONY: fuzz-api
fuzz-api: ## Fuzz the admin API against docs/admin-api.yaml with schemathesis (needs a build).
	scripts/up.sh --no-migrate
	cargo build --quiet --bin scheduler
	scripts/fuzz-admin-api.sh

.PHONY: demo
demo: ## relance at work: 2,000 customers, 90 simulated days in 5 minutes, then the report (.local/demo/report.html).
	scripts/install-deps.sh --no-browser
	cargo build --release --workspace --bins
	source scripts/env.sh && "$$RELANCE_PYTHON" scripts/demo.py --build release $(DEMO_ARGS)

.PHONY: chaos
chaos: ## The full chaos run: 100,000 events, kills and outages; asserts the guarantees (chaos/results.md).
	scripts/install-deps.sh --no-browser
	cargo build --release --workspace --bins
	source scripts/env.sh && "$$RELANCE_PYTHON" scripts/chaos.py --build release

.PHONY: bench
bench: ## The benchmark: ingest, scheduling, sending, cancellation and memory beside raw limits (bench/results.md).
	scripts/install-deps.sh --no-browser
	cargo build --release --workspace --bins
	source scripts/env.sh && "$$RELANCE_PYTHON" scripts/bench.py --build release --profile $(BENCH_ARGS)

.PHONY: check-deploy
check-deploy: ## Lint, render and validate deploy/ and helm/ (installs its tools into the cache).
	scripts/check-deploy.sh

.PHONY: docs
docs: ## Regenerate docs/configuration.md from config/default.toml.
	UPDATE_DOCS=1 cargo nextest run -p relance-config configuration_docs_match_the_defaults

.PHONY: check-config
check-config: build ## Validate config/$RELANCE_ENV.toml (default local) for every service.
	@for service in ingestor scheduler sender tracker; do $(CARGO_TARGET_DIR)/debug/$$service check-config || exit 1; done
