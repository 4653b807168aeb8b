# rtml developer entry points. CI (.ci/run) calls `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml client/pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup models run test unit lint typecheck schemas bench infra-up infra-down clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml client/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q -e './client[evaluate]'
	rm -f $(VENV)/.installed-*; touch $@

setup: $(STAMP) ## create .venv and install rtml with its dev tools

models: setup ## train and register the demo models (skips those already registered)
	$(BIN)/rtml models train-demo

run: setup ## start Kafka, Redis, demo models, two workers and the gateway; Ctrl-C stops all
	$(BIN)/rtml run

test: setup lint typecheck schemas ## the whole test suite against real Kafka and Redis
	$(BIN)/pytest $(PYTEST_ARGS)

unit: setup ## only the tests that need no Kafka/Redis
	$(BIN)/pytest -m "not stack" $(PYTEST_ARGS)

lint: setup ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup ## mypy (strict)
	$(BIN)/mypy rtml gateway workers schemas client/rtml_client

schemas: setup ## fail if schemas/json is stale (regenerate: rtml schemas export)
	$(BIN)/rtml schemas export --check

bench: setup ## benchmarks against the real stack; writes bench/out and prints a table
	$(BIN)/python -m bench.run

infra-up: setup ## start local Kafka and Redis only
	$(BIN)/rtml infra up

infra-down: setup ## stop local Kafka and Redis
	$(BIN)/rtml infra down

clean: ## remove local state (Kafka/Redis data, logs); keeps downloads in .cache
	-$(BIN)/rtml infra down
	rm -rf .rtml
