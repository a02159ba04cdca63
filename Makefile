# cognito-fdw: `make test` runs every test; `make dev` (see README) starts a dev database.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PG_PACKAGES := postgresql-15 postgresql-contrib postgresql-server-dev-15 postgresql-plpython3-15

.PHONY: test lint unit bench reliability system-deps clean dev down
HOT_SECONDS ?= 30

$(PY):
	@echo "make: creating $(VENV) with $$($(PYTHON) -c 'import sys; print(sys.executable)')"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip

# One stamp per extra, so that `make test` after `make dev` still installs the test toolchain.
$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# The dev stack needs moto's Cognito server and psycopg, not the test toolchain (about
# 150 MB of .venv instead of 520 MB). pip's own lines show what it fetches.
$(VENV)/.installed-dev: pyproject.toml | $(PY)
	@echo "make dev: installing cognito-fdw, boto3, moto's Cognito server and psycopg into $(VENV)"
	$(PY) -m pip install --disable-pip-version-check -e '.[dev]'
	@touch $@

# PostgreSQL 15 from Debian for the real-server tests (Multicorn2 itself is not packaged:
# see README, "Installing into PostgreSQL"; without it those tests skip with one line).
system-deps:
	@if [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(PG_PACKAGES); \
	  else \
	    echo "PostgreSQL 15 server binaries missing: sudo apt-get install $(PG_PACKAGES)"; \
	  fi; \
	fi

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

unit: $(VENV)/.installed-test
	$(PY) -m pytest tests/unit -q

# Tier 2 runs once per tier (tests/support/docker.py): the local PostgreSQL with every other
# test, then each Docker tier, the image built with BuildKit. A tier that cannot run here says
# why in one line. `make test DOCKER_TIERS=` runs the local tier only, `DOCKER_TIERS=docker15`
# one Docker tier.
DOCKER_TIERS ?= docker15 docker17

test: system-deps $(VENV)/.installed-test lint
	$(PY) -m pytest -rs -q
	@for tier in $(DOCKER_TIERS); do \
	  echo "make test: tier 2 in the Docker tier $$tier"; \
	  COGNITO_FDW_TIER=$$tier $(PY) -m pytest -rs -q tests/integration || exit $$?; \
	done

# Requests and wall time per query shape, the hot paths through PgBouncer (HOT_SECONDS a
# way, 30 by default) and the sync (about 15 minutes in all); writes BENCHMARKS.md.
bench: system-deps $(VENV)/.installed-test
	$(PY) -m bench.run --hot-seconds $(HOT_SECONDS)

# RELIABILITY.md and ATTACKS.md, from what the fault, load, hostile-input and hostile-role
# tests observe.
reliability: system-deps $(VENV)/.installed-test
	COGNITO_FDW_RELIABILITY_REPORT=RELIABILITY.md COGNITO_FDW_ATTACKS_REPORT=ATTACKS.md \
	  $(PY) -m pytest -q tests/integration/test_faults.py tests/integration/test_load.py \
	  tests/integration/test_hostile.py tests/integration/test_guard.py \
	  tests/integration/test_secrets.py tests/integration/test_credentials.py \
	  tests/integration/test_sync.py tests/integration/test_vault.py \
	  tests/integration/test_members.py tests/integration/test_messages.py \
	  tests/integration/test_cognito_fdw.py tests/integration/tools/test_doctor.py

# The dev stack (docs/development.md, "Dev stack"): the compose stack with a Docker engine, else a local one
# under .dev/ (PostgreSQL with Multicorn2 + moto). The preflight (standard library only) runs
# before anything is installed: without either stack, or as root in a directory PostgreSQL's
# OS user cannot enter, it says what to do, and nothing is installed.
dev:
	@$(PYTHON) -m cognito_fdw.tools.preflight
	@$(MAKE) --no-print-directory $(VENV)/.installed-dev
	@$(VENV)/bin/cognito-fdw dev up

down: $(VENV)/.installed-dev
	@$(VENV)/bin/cognito-fdw dev down

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
