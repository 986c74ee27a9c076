# MallBots — run `make help` for the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
export NATS_URL ?= nats://127.0.0.1:4222
export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres

.PHONY: help build test test-deps lint fmt run bench bench-messaging bench-outbox compose-config clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

build: ## Build every crate (debug)
	$(CARGO) build --workspace --all-targets

test-deps: ## Check NATS and PostgreSQL are reachable (start them with docker compose if possible)
	@scripts/test-deps.sh

test: test-deps ## Run every test against NATS_URL and DATABASE_URL (cargo nextest)
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace $${NEXTEST_PROFILE:+--profile $$NEXTEST_PROFILE}; \
	else \
		echo "cargo-nextest not found (cargo install cargo-nextest); using cargo test"; \
		$(CARGO) test --workspace; \
	fi

lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

run: ## Run the monolith against local NATS and PostgreSQL
	$(CARGO) run --release -p mallbots

bench: bench-messaging bench-outbox ## Run every benchmark

bench-messaging: ## Messaging crate vs raw async-nats: throughput ratio and added latency per hop
	$(CARGO) bench -p messaging --bench messaging

bench-outbox: ## Outbox relay: commit-to-consumer latency and sustained rate vs raw limits
	$(CARGO) run --release -p persistence --bin bench-outbox

compose-config: ## Validate docker-compose.yml
	@if docker compose version >/dev/null 2>&1; then docker compose config -q; else docker-compose config -q; fi

clean: ## Remove build output
	$(CARGO) clean
