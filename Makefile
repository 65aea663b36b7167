# The two commands of the README:  `make serve`  then  `make test`.   `make help` lists everything.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
MODEL_NAME ?= predictive_maintenance
HTTP_PORT ?= 8080
GRPC_PORT ?= 8081
DATA_DIR ?= .data
PYTEST_ARGS ?=
# The suite runs in this many processes (pytest-xdist; 0: in pytest's own). Its tests mostly wait for servers to
# start, so two processes on 2 cores take ~half the time; each test file stays in one process.
TEST_WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help install lock tools bootstrap serve check test test-fast docs

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

UV := $(VENV)/bin/uv
# The uv version uv.lock pins (uv is a dev dependency), so the bootstrap uv is the one the lock then keeps.
LOCKED_UV = $(shell sed -n '/^name = "uv"$$/{n;s/^version = "\(.*\)"$$/\1/p;}' uv.lock 2>/dev/null)
# uv makes .venv from $(PYTHON), never from a Python it downloads itself.
export UV_PYTHON_DOWNLOADS := never
# uv installs no bytecode by default, and with PYTHONDONTWRITEBYTECODE set Python never writes any: then every
# start compiles MLflow, scikit-learn and KServe from source (~10 s CPU instead of ~4 s for the registry client).
export UV_COMPILE_BYTECODE := 1
# The programs the suite starts (redis-server, prometheus, ...): checked and, as root, installed by this script.
TOOLS := PYTHON=$(PYTHON) bash tests/tools.sh
# Prefix for commands that must find the tools uv.lock pins (kubectl, hadolint) before any system-wide ones.
WITH_VENV := PATH="$(CURDIR)/$(VENV)/bin:$$PATH"

$(UV):
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found. Install Python 3.11" \
		"(e.g. pyenv, or Debian's python3.11) or pass PYTHON=/path/to/python3.11"; exit 1; }
	@$(TOOLS) install
	@echo "==> creating $(VENV) with uv $(LOCKED_UV)"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check "uv$(if $(LOCKED_UV),==$(LOCKED_UV))"

# Re-synced whenever the lock or the project's metadata change; --frozen installs exactly uv.lock, never
# re-resolving (`make lock` does that), and removes what the lock does not list.
$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	@echo "==> installing uv.lock into $(VENV) (first run: ~1-3 min)"
	$(UV) sync --frozen --extra dev
	@touch $@

install: $(VENV)/.installed ## create .venv and install exactly uv.lock (the project, editable, with its test tools)

lock: | $(UV) ## re-resolve uv.lock after editing pyproject.toml's dependencies (UPGRADE=1: newest versions allowed)
	$(UV) lock $(if $(UPGRADE),--upgrade)

bootstrap: install ## local MLflow registry (SQLite) + demo model + Feast repo in DATA_DIR (.data/) (idempotent)
	$(PY) -m predictor.demo.bootstrap --data_dir $(DATA_DIR) --model_name $(MODEL_NAME)

serve: bootstrap ## set everything up, then serve the demo model on :8080, gRPC :8081 (HTTP_PORT, GRPC_PORT)
	@echo "==> serving $(MODEL_NAME) on http://localhost:$(HTTP_PORT) (gRPC :$(GRPC_PORT)); Ctrl-C stops"
	$(PY) -m predictor --model_name $(MODEL_NAME) --tracking_uri sqlite:///$(DATA_DIR)/mlflow.db \
		--feature_store $(DATA_DIR)/feature_repo --model_cache_dir $(DATA_DIR)/model-cache \
		--http_port $(HTTP_PORT) --grpc_port $(GRPC_PORT)

tools: install ## check (and as root, install from Debian) the programs the suite starts: tests/tools.sh
	@$(WITH_VENV) $(TOOLS) test

check: install ## lint, format and strict types: ruff check, ruff format --check, mypy --strict (pyproject.toml)
	$(VENV)/bin/ruff check predictor tests
	$(VENV)/bin/ruff format --check predictor tests
	$(VENV)/bin/mypy

test: install tools check ## make check, then the whole test suite (starts real servers on loopback ports)
	$(WITH_VENV) $(PY) -m pytest --numprocesses $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "error: pytest collected no tests"; exit 1; fi; exit $$status

test-fast: install ## the in-process tests only (no servers, no registry): feedback in under a minute
	$(PY) -m pytest --numprocesses $(TEST_WORKERS) -m "not servers" -q $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "error: pytest collected no tests"; exit 1; fi; exit $$status

docs: install ## regenerate the README's settings and status tables from the code
	$(PY) -m predictor.docs README.md

-include manifests/deploy.mk
-include tests/bench/bench.mk

# A soak (issue 27): mixed load over every door for MINUTES against a real mlflow server and redis-server with
# --workers 2, while an alias moves, Redis restarts, the payload sink and the registry are down, a worker is killed,
# the server restarts from its cache with a challenger, and SIGTERM arrives under load (tests/soak/run.py). Writes
# report.md, report.json and timeline.png to SOAK_OUT; exits 1 when a goal is missed. One minute of it is in `make test`.
.PHONY: soak
MINUTES ?= 10
SOAK_OUT ?= soak-results
soak: install tools ## a soak of MINUTES (10) under faults; report and timeline PNG in SOAK_OUT (soak-results/)
	$(PY) -m tests.soak.run --minutes $(MINUTES) --out $(SOAK_OUT)

# Mutation testing of the pure core (not part of `make test`): mutmut in a copy of the tree, with the fast unit
# tests the [tool.mutmut] section of pyproject.toml names; prints the share of mutants killed per module.
# MUTANTS narrows the run to mutant-name globs, e.g. MUTANTS='predictor.protocol.*' (one module group at a time
# on a small machine); tests/mutation/RESULTS.md has the last figures and the equivalent survivors.
.PHONY: mutation
MUTATION_DIR ?= $(or $(TMPDIR),/tmp)/predictor-mutation
MUTANTS ?=
mutation: install ## mutation testing of the protocol decoders, errors, access/security, batching, forest, the model's lifecycle, the Feast read, fill and lookups (mutmut; fails below 85% killed)
	@rm -rf $(MUTATION_DIR) && mkdir -p $(MUTATION_DIR)
	@cp -r predictor tests pyproject.toml $(MUTATION_DIR)/
	cd $(MUTATION_DIR) && $(CURDIR)/$(VENV)/bin/mutmut run --max-children 2 $(foreach m,$(MUTANTS),'$(m)') \
		> mutmut-run.log 2>&1 || { tail -30 mutmut-run.log; exit 1; }
	@cd $(MUTATION_DIR) && $(CURDIR)/$(PY) tests/mutation/report.py $(if $(SURVIVORS),--survivors)
