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
run: build up ## Run the four services locally (Ctrl-C stops them).
	scripts/run.sh

.PHONY: fmt
fmt: ## Format the code.
	cargo fmt --all

.PHONY: lint
lint: ## Check formatting and clippy lints.
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

.PHONY: test
test: ## Bring up what the tests need, then format check, clippy, and every test.
	scripts/up.sh --no-migrate
	scripts/install-python-tools.sh
	scripts/check-deploy.sh
	source scripts/env.sh && "$$RELANCE_PYTHON" -m unittest discover -s scripts/tests
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	source scripts/env.sh && cargo nextest run --workspace --profile $(NEXTEST_PROFILE)

.PHONY: check-deploy
check-deploy: ## Lint, render and validate deploy/ and helm/ (installs its tools into the cache).
	scripts/check-deploy.sh

.PHONY: docs
docs: ## Regenerate docs/configuration.md from config/default.toml.
	UPDATE_DOCS=1 cargo nextest run -p relance-config configuration_docs_match_the_defaults

.PHONY: check-config
check-config: build ## Validate config/$RELANCE_ENV.toml (default local) for every service.
	@for service in ingestor scheduler sender tracker; do $(CARGO_TARGET_DIR)/debug/$$service check-config || exit 1; done
