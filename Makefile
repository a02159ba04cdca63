# cognito-fdw: `make test` runs every test; `make dev` (see README) starts a dev database.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PG_PACKAGES := postgresql-15 postgresql-contrib postgresql-server-dev-15 postgresql-plpython3-15

.PHONY: test lint unit bench reliability system-deps clean dev down

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

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

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit -q

test: system-deps $(VENV)/.installed lint
	$(PY) -m pytest -rs -q

# Requests and wall time per query shape (about 5 minutes); writes BENCHMARKS.md.
bench: system-deps $(VENV)/.installed
	$(PY) -m bench.run

# RELIABILITY.md and SECURITY.md's table of attacks, from what the fault, load,
# hostile-input and hostile-role tests observe.
reliability: system-deps $(VENV)/.installed
	COGNITO_FDW_RELIABILITY_REPORT=RELIABILITY.md COGNITO_FDW_SECURITY_REPORT=SECURITY.md \
	  $(PY) -m pytest -q tests/integration/test_faults.py tests/integration/test_load.py \
	  tests/integration/test_hostile.py tests/integration/test_guard.py

# The dev stack (README, "Dev stack"): the compose stack with a Docker engine, else a local one
# under .dev/ (PostgreSQL with Multicorn2 + moto); without either it says what to install.
dev: $(VENV)/.installed
	$(VENV)/bin/cognito-fdw dev up

down: $(VENV)/.installed
	$(VENV)/bin/cognito-fdw dev down

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
