# Quick start:  make run        (set up .venv, run the default workflow)
#               make test       (set up .venv, lint, run the test suite)
#               make docs       (build the documentation site into site/, warnings as errors)
#               make test-fast  (lint and the fast unit tests: no Snakemake, training,
#                                long simulation, SLURM, browser or GPU; under two minutes)
#               make gpu-check  (on a CUDA machine: the gpu tests, the kernels' static check and
#                                benchmarks/gpu.py, one targets table, also gpu-check.json;
#                                needs only torch, Triton, timm and pytest)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
CORES ?= all
# Debian packages: the default dataset for `make run`; the test suite also needs
# a headless browser (report links) and a single-node SLURM (cluster path).
RUN_DEBS := dataset-fashion-mnist
TEST_DEBS := $(RUN_DEBS) chromium slurm-wlm munge

.PHONY: run test test-fast setup setup-dev lint docs clean run-debs test-debs gpu-check

# `make run` installs what the workflow needs; the tests, linters and docs add the dev extra.
setup: $(STAMP)

setup-dev: $(DEV_STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	@touch $@

$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

run-debs:
	@bash workflow/scripts/install_debs.sh $(RUN_DEBS)

test-debs:
	@bash workflow/scripts/install_debs.sh $(TEST_DEBS)

run: setup run-debs
	$(BIN)/snakemake --cores $(CORES)

lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check Snakefile workflow

docs: setup-dev
	$(BIN)/mkdocs build --strict --quiet

# Two pytest workers (the CI machine's cores); tests that share a costly fixture stay together,
# and the two longest groups (the SLURM run, the tiny workflow) start first, one on each worker.
TEST_WORKERS ?= 2

test: setup-dev test-debs lint docs
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

test-fast: setup-dev lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup -m "not slow and not slurm and not browser and not gpu"

# The project's venv when there is one, else whichever python has torch, Triton and timm.
GPU_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))

gpu-check:
	$(GPU_PYTHON) benchmarks/gpu_check.py --json gpu-check.json

clean:
	rm -rf results .snakemake site
