# Two commands matter: `make run` (the main job) and `make test` (what CI runs).
# Every target installs what it needs: a .venv and node_modules in the checkout.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NODE := node_modules/.installed

.PHONY: run demo test check lint format typecheck install emulator host clean

install: $(STAMP_PY) $(STAMP_NODE)

$(STAMP_PY): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

$(STAMP_NODE): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

## make run: the whole pipeline on the local stack, shown state by state, then keep serving.
run: install
	$(PY) -m local.demo --serve

## make demo: the same, non-interactive: exit 0 once the sample run is LIVE.
demo: install
	$(PY) -m local.demo

## make test: lint, format check, type check, then the whole test suite.
test: check
	$(PY) -m pytest

check: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: $(STAMP_PY)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

## make emulator: the Azure ML emulator alone, on port 8443 (PORT=... to change).
emulator: $(STAMP_PY)
	$(PY) -m local.azureml_emulator --port $${PORT:-8443}

## make host: the local Functions host alone, for the app in this folder
## (settings from local.settings.json).
host: install
	$(PY) -m local.functions_host --app-dir .

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .local-stack
