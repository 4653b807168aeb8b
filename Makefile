# rtml developer entry points. CI (.ci/run) calls `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HASH   := $(shell cat pyproject.toml client/pyproject.toml | cksum | cut -d' ' -f1)
STAMP  := $(VENV)/.installed-$(HASH)
DEV_STAMP := $(VENV)/.installed-dev-$(HASH)
PYTEST_ARGS ?=
# Every target runs rtml with the checkout's developer config: models in models/, local
# Kafka/Redis state in .rtml/, downloads in .cache/ (paths relative to config/).
export RTML_CONFIG ?= $(CURDIR)/config/default.yaml

.DEFAULT_GOAL := help

.PHONY: help setup setup-dev models run test unit faults lint typecheck schemas bench infra-up infra-down clean package-check

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml client/pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e '.[train]' -e './client[evaluate]'
	touch $@

$(DEV_STAMP): pyproject.toml client/pyproject.toml | $(VENV)/bin/python
	@# The import extras (TensorFlow, PyTorch, MLflow) are large; where their wheels cannot be
	@# installed, their tests skip and say so (pytest -rs).
	$(BIN)/pip install -q -e '.[dev]' -e './client[evaluate]' || \
	  { echo "WARNING: import extras not installable here; their tests will be skipped"; \
	    $(BIN)/pip install -q -e '.[dev-core]' -e './client[evaluate]'; }
	touch $(STAMP) $@

setup: $(STAMP) ## create .venv and install rtml and its client (what `make run` needs)

setup-dev: $(DEV_STAMP) ## also the test, lint and model-import tooling

models: setup ## train and register the demo models (skips those already registered)
	$(BIN)/rtml models train-demo

run: setup ## start Kafka, Redis, demo models, two workers and the gateway; Ctrl-C stops all
	$(BIN)/rtml run

test: setup-dev lint typecheck schemas ## the whole test suite against real Kafka and Redis
	$(BIN)/pytest $(PYTEST_ARGS)

unit: setup-dev ## tests/unit only: no sockets, no subprocesses, under a minute
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

faults: setup-dev ## the long fault-injection suite (kill -9 of each process under load, ~6 min)
	FAULT_SUITE=full $(BIN)/pytest tests/faults -s -p no:randomly $(PYTEST_ARGS)

lint: setup-dev ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup-dev ## mypy (strict)
	$(BIN)/mypy rtml runtime importers gateway workers drift schemas client/rtml_client bench

schemas: setup-dev ## fail if schemas/json is stale (regenerate: rtml schemas export)
	$(BIN)/rtml schemas export --check

bench: setup-dev ## benchmarks against the real stack; writes bench/out and prints a table
	$(BIN)/python -m bench.run --repeat 3
	$(BIN)/python -m bench.drift_throughput

package-check: ## build both wheels, install them in a fresh venv outside the checkout, run every command
	tests/packaging/check_install.sh

infra-up: setup ## start local Kafka and Redis only
	$(BIN)/rtml infra up

infra-down: setup ## stop local Kafka and Redis
	$(BIN)/rtml infra down

clean: ## remove local state (Kafka/Redis data, logs); keeps downloads in .cache
	-$(BIN)/rtml infra down
	rm -rf .rtml
