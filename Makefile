# Ingot: `make run` and `make test` are all a fresh machine needs; both set up .venv themselves.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0

.PHONY: help run test bench venv postgres pipelines serve clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

venv: $(STAMP) ## Create or refresh .venv from the pinned requirements

postgres: ## Install Debian's PostgreSQL server where it is missing (the registry tests start a throwaway one)
	@if ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then :; else \
	  echo "installing postgresql (Debian package) for the registry tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; fi

run: $(STAMP) ## Run the ingot-retrain pipeline (kfp local runner) on the bundled digits with the default recipe
	$(VENV)/bin/ingot pipeline run --config configs/digits-cnn.yaml --model-repository ./model-repository

pipelines: $(STAMP) ## Recompile the checked-in Kubeflow pipeline YAML (pipelines/compiled/) from pipelines/retrain.py
	INGOT_IMAGE= $(VENV)/bin/ingot pipeline compile --output pipelines/compiled/ingot-retrain.yaml

serve: $(STAMP) ## Serve ./model-repository over TF Serving's REST (8501) and gRPC (8500) APIs
	$(VENV)/bin/ingot serve --model_repository ./model-repository

test: $(STAMP) postgres ## Run the whole test suite
	$(PY) -m pytest -n 2 --dist loadgroup

bench: $(STAMP) ## Run the benchmarks; each prints its figures and ratios against a baseline from the same run
	@set -e; for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b; done

clean: ## Remove the virtualenv and local outputs
	rm -rf $(VENV) model-repository .ingot .pytest_cache
