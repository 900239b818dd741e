# Two commands matter: `make run` (the main job) and `make test` (what CI runs).
# Every target installs what it needs: a .venv and node_modules in the checkout.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NODE := node_modules/.installed
CHROMIUM := /usr/bin/chromium
# The deployment template's offline checks live in their own venv: checkov pins
# pycep-parser and pulls ~290 MiB that must not disturb the app's pins.
VENV_IAC := .venv-iac
PY_IAC := $(VENV_IAC)/bin/python
STAMP_IAC := $(VENV_IAC)/.installed
CHECKOV_REPORT := .local-stack/checkov.json

.PHONY: run demo bench test test-fast check check-infra test-azure lint format typecheck install emulator host clean

install: $(STAMP_PY) $(STAMP_NODE)

$(STAMP_PY): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

$(STAMP_IAC): requirements-iac.txt
	test -x $(PY_IAC) || $(PYTHON) -m venv $(VENV_IAC)
	$(PY_IAC) -m pip install --quiet --upgrade pip
	$(PY_IAC) -m pip install --quiet -r requirements-iac.txt
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

## make bench: every benchmark in bench/, one after the other (about 10 minutes);
## writes bench/results.md, each figure a ratio against a reference from the same run.
bench: install
	$(PY) -m bench

## make test: lint, format check, type check, the deployment template's checks,
## then the whole test suite (tests/infra already ran in check-infra), on two
## workers, a test module per worker (each worker starts its own Azurite and emulator).
test: check check-infra $(CHROMIUM)
	$(PY) -m pytest --ignore=tests/infra -n 2 --dist loadfile

## The dashboard's browser test drives the distribution's headless Chromium (Debian's
## package, installed here when missing; Playwright downloads no browser).
$(CHROMIUM):
	command -v chromium >/dev/null || (apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium)

## make test-fast: the unit tests and the API's pure rules only: in-memory fakes of
## the app's own ports, no Azurite, no emulator, no network; seconds, not minutes.
## Then how much of the services (reconciler, intake, control) those tests reach.
## Its data goes under .local-stack, which git ignores.
FAST_TESTS := tests/unit tests/api/test_api_unit.py
FAST_COVERAGE := COVERAGE_FILE=.local-stack/coverage-fast
test-fast: $(STAMP_PY)
	mkdir -p .local-stack
	$(FAST_COVERAGE) $(PY) -m coverage run --branch --source=shared \
		-m pytest -q -m "not integration" $(FAST_TESTS)
	$(FAST_COVERAGE) $(PY) -m coverage report --show-missing \
		--include=shared/pipeline/reconciler.py,shared/pipeline/intake.py,shared/pipeline/control.py

## make check-infra: the deployment template (infra/), offline: every Bicep file
## parses (pycep), checkov finds no failed check and no parse error (skips are
## justified in place), and tests/infra checks it against the code.
check-infra: $(STAMP_IAC) $(STAMP_PY)
	$(PY_IAC) tests/infra/parse_bicep.py infra >/dev/null
	mkdir -p $(dir $(CHECKOV_REPORT))
	$(VENV_IAC)/bin/checkov --framework bicep --skip-download -o json -d infra \
		>$(CHECKOV_REPORT) || true
	$(PY_IAC) tests/infra/checkov_gate.py $(CHECKOV_REPORT)
	$(PY) -m pytest tests/infra

## make test-azure: opt-in live end-to-end against the deployed app (README,
## "Deploy to Azure"): trains and deploys for real, and costs accordingly.
test-azure: $(STAMP_PY)
	$(PY) -m pytest tests/azure -m azure -s

check: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

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
	rm -rf $(VENV) $(VENV_IAC) node_modules .pytest_cache .mypy_cache .ruff_cache .local-stack
