# speechbrain-wsm: the two Quickstart commands live here.
#   make demo    the end-to-end demo (DEMO_ARGS="--quick" for a few minutes)
#   make test    installs what the tests need, then lint + the whole test suite
#   make bench   the layer benchmark alone
#   make kenlm   KenLM's lmplz/build_binary into the venv (word n-gram LMs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install system-deps kenlm test lint bench format demo

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade -q pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

system-deps:
	bash scripts/install_system_deps.sh

kenlm: $(STAMP)
	bash scripts/build_kenlm.sh $(VENV)/bin

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: $(STAMP) system-deps kenlm lint
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --durations=15

bench: $(STAMP)
	$(PY) -m speechbrain_wsm.bench.layers

DEMO_ARGS ?=
demo: $(STAMP)
	bash scripts/install_system_deps.sh --strict
	bash scripts/build_kenlm.sh $(VENV)/bin --strict
	$(PY) -m speechbrain_wsm.demo $(DEMO_ARGS)
