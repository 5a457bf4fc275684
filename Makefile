# rentlake — two commands on a fresh machine: `make demo` and `make test`.
# Everything installs into ./.venv from the pinned requirements/lock.txt (Python 3.11+ needed).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
LAKE   ?= .rentlake
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv py313 demo test test-fast test-slow lint bench lock clean-lake distclean system-deps

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(STAMP): requirements/lock.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "rentlake needs Python 3.11 or newer")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements/lock.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $@

venv: $(STAMP)  ## create .venv and install the pinned dependencies

# The prediction path also runs on Python 3.13 (Lambda's runtime): .venv-313 holds only what the predict
# function ships (functions/predict/requirements.txt, + boto3 which Lambda provides), and
# tests/unit/test_runtime_light.py serves an estimate with it. pyenv's 3.13 is found with PYENV_VERSION;
# without a python3.13 that test is skipped and says so.
PY313_VERSIONS ?= 3.11.7:3.13.0
PY313_STAMP := .venv-313/.installed-stamp
$(PY313_STAMP): functions/predict/requirements.txt requirements/lock.txt
	@PY=$$(PYENV_VERSION=$(PY313_VERSIONS) command -v python3.13 || true); \
	if [ -z "$$PY" ]; then echo "no python3.13 here: the light path is tested on $$($(PYTHON) -V) only"; exit 0; fi; \
	test -x .venv-313/bin/python || PYENV_VERSION=$(PY313_VERSIONS) $$PY -m venv .venv-313; \
	.venv-313/bin/python -m pip install -q -r functions/predict/requirements.txt boto3 -c requirements/lock.txt \
		&& touch $@

py313: $(PY313_STAMP)  ## a Python 3.13 venv with the predict function's dependencies only

system-deps:  ## install the Debian packages the browser test needs (chromium), when apt-get is there
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium for the browser test (apt-get)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi

demo: $(STAMP)  ## run the whole cycle on the sample data in the embedded local lake (./.rentlake)
	$(BIN)/rentlake --lake-dir $(LAKE) pipeline data/samples/house_intact.csv \
		data/samples/encadrement_loyers_paris_lille_2015_2017.csv \
		data/samples/encadrement_loyers_paris_2025.csv

test: $(STAMP) system-deps py313 lint  ## lint, then the full test suite (what CI runs)
	$(BIN)/python -m pytest -n 3 -q $(PYTEST_ARGS)

test-fast: $(STAMP)  ## the suite without the slow tier (network wheel checks, browser, fuzzing)
	$(BIN)/python -m pytest -n 2 -q -m "not slow and not browser" $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff: lint rules and formatting (what CI checks first)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)  ## the benchmarks (minutes); figures go to bench/RESULTS.md
	$(BIN)/python bench/bench_ingest_clean.py --record
	$(BIN)/python bench/bench_predict.py
	$(BIN)/python bench/bench_legal.py

lock:  ## re-resolve requirements/dev.in into requirements/lock.txt (in a scratch venv)
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q -r requirements/dev.in
	.venv-lock/bin/pip freeze --exclude-editable > requirements/lock.txt
	rm -rf .venv-lock

clean-lake:  ## forget the embedded local lake
	rm -rf $(LAKE)

distclean: clean-lake  ## also remove the virtual environment
	rm -rf $(VENV) .venv-313 .venv-sam .aws-sam
