# Ingot: `make run` and `make test` are all a fresh machine needs; both set up .venv themselves.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0

.PHONY: help run retrain test lint typecheck bench venv postgres redis pipelines serve gateway clean distclean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

venv: $(STAMP) ## Create or refresh .venv from the pinned requirements

postgres: ## Make sure Debian's PostgreSQL server is installed (the registry and log tests start a throwaway one); says what it does
	@if ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then \
	  echo "postgres: using $$(ls -d /usr/lib/postgresql/*/bin | tail -1) for the throwaway test servers"; \
	else \
	  echo "postgres: not installed; installing Debian's postgresql package with apt-get (needs root)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null \
	    && echo "postgres: installed $$(ls -d /usr/lib/postgresql/*/bin | tail -1)"; \
	fi

redis: ## Make sure Debian's redis-server is installed (the prediction cache's tests and `make gateway` start a throwaway one); says what it does
	@if command -v redis-server >/dev/null 2>&1; then \
	  echo "redis: using $$(command -v redis-server) ($$(redis-server --version | cut -d' ' -f3))"; \
	else \
	  echo "redis: not installed; installing Debian's redis-server package with apt-get (needs root)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null \
	    && echo "redis: installed $$(command -v redis-server)"; \
	fi

run: $(STAMP) ## The whole loop on the bundled digits: retrain, serve champion and challenger, A/B decision, drift, retrain
	$(VENV)/bin/ingot loop --config configs/digits-cnn.yaml --challenger-config configs/digits-cnn-challenger.yaml \
	    --policy configs/rollout-local.yaml --model-repository ./model-repository

retrain: $(STAMP) ## Only the ingot-retrain pipeline (kfp local runner) on the bundled digits with the default recipe
	$(VENV)/bin/ingot pipeline run --config configs/digits-cnn.yaml --model-repository ./model-repository

pipelines: $(STAMP) ## Recompile the checked-in Kubeflow pipeline YAML (pipelines/compiled/) from pipelines/retrain.py
	INGOT_IMAGE= $(VENV)/bin/ingot pipeline compile --output pipelines/compiled/ingot-retrain.yaml

serve: $(STAMP) ## Serve ./model-repository over TF Serving's REST (8501) and gRPC (8500) APIs
	$(VENV)/bin/ingot serve --model_repository ./model-repository

gateway: $(STAMP) redis ## Try Ingot's gateway: `ingot serve` (every version) behind `ingot gateway` on 8501/8500, champion vs newest challenger
	$(PY) -m ingot.gateway.tryout --model_repository ./model-repository

test: $(STAMP) postgres redis ## Run the whole test suite (calls `make postgres` and `make redis` first)
	$(PY) -m pytest -n 2 --dist loadgroup

lint: $(STAMP) ## ruff over the code, tests, benchmarks and components
	$(VENV)/bin/ruff check .

typecheck: $(STAMP) ## mypy over the packages that ship a py.typed marker
	$(PY) -m mypy

bench: $(STAMP) ## Run the benchmarks; each prints its figures and ratios against a baseline from the same run
	@set -e; for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b; done

clean: ## Remove caches and build outputs (keeps .venv, published models and the registry)
	rm -rf .pytest_cache .hypothesis .mypy_cache .ruff_cache build dist *.egg-info
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean ## Also remove .venv, ./model-repository (published models) and ./.ingot (registry, inference log, pipeline runs)
	@echo "distclean: removing .venv, model-repository/ (published models) and .ingot/ (registry, inference log, local pipeline runs)"
	rm -rf $(VENV) model-repository .ingot
