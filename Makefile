# MallBots — run `make help` for the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
export NATS_URL ?= nats://127.0.0.1:4222
export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres

.PHONY: help build test test-deps lint fmt run run-services bench bench-messaging bench-outbox fuzz-rest compose-config compose-up nats-config clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

build: ## Build every crate (debug)
	$(CARGO) build --workspace --all-targets

test-deps: ## Check NATS and PostgreSQL are reachable (start them with docker compose if possible)
	@scripts/test-deps.sh

test: test-deps ## Run every test against NATS_URL and DATABASE_URL (cargo nextest)
	$(CARGO) build --workspace --bins   # the end-to-end tests start the real binaries
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace $${NEXTEST_PROFILE:+--profile $$NEXTEST_PROFILE}; \
	else \
		echo "cargo-nextest not found (cargo install cargo-nextest); using cargo test"; \
		$(CARGO) test --workspace; \
	fi

.PHONY: test-faults
test-faults: test-deps ## Fault-injection suite (kill -9, NATS/PostgreSQL restarts, duplicates, poison, cluster node) and its table; FAULTS_CHECKOUTS sets the load (default 20)
	$(CARGO) build --bins -p mallbots -p services-runner -p stores -p customers -p baskets -p ordering -p payments -p depot -p notifications -p search -p order-saga
	@report=$$(mktemp); status=0; \
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
		FAULTS_REPORT=$$report $(CARGO) nextest run -p e2e --test faults --no-capture $${NEXTEST_PROFILE:+--profile $$NEXTEST_PROFILE} || status=$$?; \
	else \
		FAULTS_REPORT=$$report $(CARGO) test -p e2e --test faults -- --test-threads=1 --nocapture || status=$$?; \
	fi; \
	echo; echo "Fault table (FAULTS_CHECKOUTS=$${FAULTS_CHECKOUTS:-20}):"; \
	printf '| %-38s | %9s | %8s | %4s | %10s | %13s |\n' fault checkouts finished lost duplicated "recovery time"; \
	echo '|----------------------------------------|-----------|----------|------|------------|---------------|'; \
	cat $$report; rm -f $$report; exit $$status

lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

run: ## Run the monolith against local NATS and PostgreSQL (HTTP_ADDR, default 0.0.0.0:8080)
	$(CARGO) run --release -p mallbots

run-services: ## Run every service as its own process behind one entry point on HTTP_ADDR
	$(CARGO) build --release --bins
	./target/release/run-services

compose-up: ## Start the whole system with docker compose and wait until it is ready
	docker compose up -d --wait

bench: ## Load-test the monolith (loadgen at concurrency 1, 8, 32, a 5-minute soak for memory growth, raw limits) and write BENCHMARKS.md (~9 min)
	$(CARGO) build --release -p mallbots -p loadgen
	./target/release/loadgen bench-suite --mallbots-bin target/release/mallbots --out BENCHMARKS.md

bench-messaging: ## Messaging crate vs raw async-nats: throughput ratio and added latency per hop
	$(CARGO) bench -p messaging --bench messaging

bench-outbox: ## Outbox relay: commit-to-consumer latency and sustained rate vs raw limits
	$(CARGO) run --release -p persistence --bin bench-outbox

SCHEMATHESIS_VERSION := 4.32.5
SCHEMATHESIS_VENV := target/schemathesis

$(SCHEMATHESIS_VENV)/.installed-$(SCHEMATHESIS_VERSION):
	python3 -m venv $(SCHEMATHESIS_VENV)
	$(SCHEMATHESIS_VENV)/bin/pip install --quiet --disable-pip-version-check schemathesis==$(SCHEMATHESIS_VERSION)
	touch $@

fuzz-rest: test-deps $(SCHEMATHESIS_VENV)/.installed-$(SCHEMATHESIS_VERSION) ## Fuzz the REST API from /openapi.json with schemathesis (FUZZ_EXAMPLES per operation, FUZZ_SEED)
	$(CARGO) build -p mallbots -p e2e --bins
	SCHEMATHESIS=$(SCHEMATHESIS_VENV)/bin/schemathesis $${CARGO_TARGET_DIR:-target}/debug/fuzz-rest

compose-config: ## Validate docker-compose.yml
	@if docker compose version >/dev/null 2>&1; then docker compose config -q; else docker-compose config -q; fi

nats-config: ## Regenerate docker/nats/auth.conf (a NATS user per service, only its subjects)
	$(CARGO) run -q -p admin --bin mallbots-admin -- nats-config --prefix mallbots --out docker/nats/auth.conf

clean: ## Remove build output
	$(CARGO) clean
