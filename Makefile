# Quick start:  make run   (set up .venv, run the default workflow)
#               make test  (set up .venv, lint, run the test suite)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all
# Debian packages: the default dataset for `make run`; the test suite also needs
# a headless browser (report links) and a single-node SLURM (cluster path).
RUN_DEBS := dataset-fashion-mnist
TEST_DEBS := $(RUN_DEBS) chromium slurm-wlm munge

.PHONY: run test setup lint clean run-debs test-debs

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

run-debs:
	@bash workflow/scripts/install_debs.sh $(RUN_DEBS)

test-debs:
	@bash workflow/scripts/install_debs.sh $(TEST_DEBS)

run: setup run-debs
	$(BIN)/snakemake --cores $(CORES)

lint: setup
	$(BIN)/ruff check .

test: setup test-debs lint
	$(BIN)/python -m pytest

clean:
	rm -rf results .snakemake
