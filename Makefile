# Persona Pipeline — front door. `make demo` and `make test` do all the set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DATE ?= 2026-12-01
DEMO_CUSTOMERS ?= 20000
PYTEST_ARGS ?=

export AIRFLOW_HOME := $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__LOGGING__LOGGING_LEVEL ?= WARNING
export GX_ANALYTICS_ENABLED := False

.PHONY: venv demo test lint bench clean

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -e .
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/persona-pipeline seed --customers $(DEMO_CUSTOMERS) --out data/warehouse.duckdb
	$(BIN)/airflow db migrate > .airflow-migrate.log 2>&1 || (cat .airflow-migrate.log; exit 1)
	$(BIN)/airflow pools set persona_images 4 "Concurrent persona image tasks" > /dev/null
	PERSONA_CONFIG=$(CURDIR)/config/demo.yaml $(BIN)/airflow dags test persona_nightly $(DEMO_DATE) > data/demo-dag-test.log 2>&1 \
	  || (tail -60 data/demo-dag-test.log; echo "DAG test failed: full log in data/demo-dag-test.log"; exit 1)
	@PERSONA_CONFIG=$(CURDIR)/config/demo.yaml $(BIN)/persona-pipeline where --date $(DEMO_DATE)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check persona_pipeline dags plugins tests bench
	$(BIN)/mypy persona_pipeline dags plugins

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf data .airflow .airflow-migrate.log .pytest_cache .mypy_cache .ruff_cache
