# TPAS-ML: every target creates or reuses the virtual environment by itself.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3.11
UV_VERSION := 0.13.8
BIN := $(VENV)/bin
# Compiled bytecode is kept (under the venv, not beside the sources) even where the environment
# turns it off: every test subprocess, server and Dask worker would otherwise recompile its imports.
export PYTHONDONTWRITEBYTECODE :=
export PYTHONPYCACHEPREFIX := $(abspath $(VENV))/pycache
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help setup system demo serve test test-fast lock bench clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "uv==$(UV_VERSION)"
	$(BIN)/uv pip install -q --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

setup: $(STAMP) ## Create/refresh the virtual environment from requirements.lock

# Debian packages the tests need (debian-packages.txt: chromium for the officials' page browser test).
system: ## Install the Debian packages of debian-packages.txt that are missing (apt; root or sudo)
	@missing=$$(for p in $$(grep -v '^#' debian-packages.txt); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; else \
	    echo "missing Debian packages: $$missing (install them with apt-get; the browser test skips without them)"; exit 0; fi; \
	  $$SUDO apt-get install -y -q --no-install-recommends $$missing >/dev/null || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q --no-install-recommends $$missing >/dev/null; }; \
	fi

demo: setup ## Run the main job end to end on embedded defaults (SQLite, local MLflow, data/)
	$(BIN)/tpas demo

serve: setup ## Start the scoring service on 127.0.0.1:3000 (needs champions: make demo)
	$(BIN)/tpas serve

test: setup system ## Run the whole test suite
	$(BIN)/python -m pytest

test-fast: setup ## Run the tests not marked slow
	$(BIN)/python -m pytest -m "not slow"

bench: setup ## Run the benchmarks in bench/ at their short sizes (full sizes: see README)
	$(BIN)/python bench/features_bench.py
	$(BIN)/python bench/models_bench.py --quick
	$(BIN)/python bench/serving_bench.py --quick
	$(BIN)/python bench/batch_bench.py --quick
	$(BIN)/python bench/monitoring_bench.py --quick

lock: ## Re-resolve requirements.in into requirements.lock
	@test -x $(BIN)/uv || { $(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install -q "uv==$(UV_VERSION)"; }
	$(BIN)/uv pip compile requirements.in --python-version 3.11 -o requirements.lock

clean: ## Remove generated data and caches (keeps the virtual environment)
	rm -rf data test-artifacts .pytest_cache bench/out
