# Two commands for a fresh machine with Python >= 3.11 and make:
#   make demo   run the demo pipeline end to end (local files, local journal;
#               in a terminal it shows the live progress display)
#   make test   lint, type-check and run the whole test suite
# Each creates or updates the virtualenv in .venv first.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
DEMO_DATE ?= 2026-11-23

.PHONY: demo demo-s3 test lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/asyncflow run examples/etl.py:LoadReport --date $(DEMO_DATE)

demo-s3: $(STAMP)
	$(BIN)/python examples/s3_demo.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_dag.py

clean:
	rm -rf $(VENV) data .asyncflow
