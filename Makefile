# nnkit: every target installs what it needs into .venv, and is quick once set up.
#
#   make parity   export the zoo and run the parity matrix on the runtimes present,
#                 reports in reports/ (the main job)
#   make test     the test suite
#   make lint     ruff check, format check and mypy
#   make dist-check  build the sdist and the wheel, twine check them, install the wheel
#                 into a fresh venv and run nnkit from it (.ci/dist-check says how)
#
# torch is pinned to the 2.13.0 build this kind of machine has on disk (CPU); everything
# else to the versions CI runs (constraints.txt). A GPU user picks another torch build:  make install TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"

PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.nnkit-installed
REPORTS ?= reports

.PHONY: install test lint format parity bench dist-check clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,plot,test-models,rewrite]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

parity: install
	mkdir -p $(REPORTS)
	$(BIN)/nnkit parity --artifacts $(REPORTS)/onnx --json $(REPORTS)/parity.json \
		--markdown $(REPORTS)/parity.md --junit $(REPORTS)/parity.xml

bench: install
	$(BIN)/python scripts/bench_zoo.py

dist-check: install
	PYTHON=$(PYTHON) TORCH="$(TORCH)" BIN=$(BIN) .ci/dist-check

clean:
	rm -rf $(VENV) $(REPORTS) .pytest_cache .ruff_cache .hypothesis dist build
