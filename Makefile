# labelloop developer commands. `make demo` runs the whole loop locally; `make test` runs every check.
PYTHON ?= python3
VENV := .venv
SAM_VENV := .venv-sam
CHECKOV_VENV := .venv-checkov
PY := $(VENV)/bin/python
SAM := $(SAM_VENV)/bin/sam
CHECKOV := $(CHECKOV_VENV)/bin/checkov --quiet --compact --framework cloudformation --skip-download
SAM_RUNTIME ?= python3.11
# Test processes (pytest-xdist): one per core; a test file's tests share a process, so its fixtures do.
TEST_WORKERS ?= auto
PARALLEL := -n $(TEST_WORKERS) --dist loadfile
# The SAM CLI sends usage data unless told not to; no target of this file lets it.
export SAM_CLI_TELEMETRY := 0

.PHONY: help venv demo test coverage lint format typecheck validate unit integration browser iam iam-mutations build bench clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: requirements/dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

$(SAM_VENV)/.installed: requirements/sam.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q --upgrade pip
	$(SAM_VENV)/bin/pip install -q -r requirements/sam.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements/checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --upgrade pip
	$(CHECKOV_VENV)/bin/pip install -q -r requirements/checkov.txt
	touch $@

venv: $(VENV)/.installed $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed ## create the virtual environments from the pinned requirements

demo: $(VENV)/.installed ## run the whole loop on the local stack (no AWS account needed)
	$(VENV)/bin/labelloop local demo --replay

validate: $(SAM_VENV)/.installed ## sam validate --lint
	$(SAM) validate --lint

# checkov scans the SAM template and what SAM makes of it (what CloudFormation deploys); accepted
# findings are suppressed in template.yaml (Metadata: checkov: skip) with their reason.
lint: $(VENV)/.installed $(CHECKOV_VENV)/.installed ## ruff, ruff format --check, checkov on the template and its SAM translation
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(CHECKOV) -f template.yaml
	mkdir -p build
	$(PY) -m tests.support.sam_translate template.yaml > build/template.translated.json
	$(CHECKOV) -f build/template.translated.json

format: $(VENV)/.installed ## fix what ruff can fix and format the code
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: $(VENV)/.installed ## mypy over the whole tree
	$(VENV)/bin/mypy

build: $(SAM_VENV)/.installed ## sam build for the Python runtime SAM_RUNTIME (python3.11 here)
	$(SAM) build --parameter-overrides PythonRuntime=$(SAM_RUNTIME)

unit: $(VENV)/.installed ## unit tests only (domain, services on fakes, schemas, template, detector)
	$(PY) -m pytest tests/unit -q $(PARALLEL)

integration: venv ## whole flows on moto and the local services, sam build, handler imports
	PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" $(PY) -m pytest tests/integration -q $(PARALLEL)

browser: $(VENV)/.installed ## the review portal in headless Chromium
	$(PY) -m pytest tests/browser -q

iam: $(VENV)/.installed ## prove every AWS call of the flows is allowed by its function's role (records, then checks)
	$(PY) -m pytest tests/iam -q -m iam

iam-mutations: $(VENV)/.installed ## remove each action and statement of each role in turn: every removal must fail the proof
	$(PY) bench/iam_mutations.py

# The tests run once, recording every AWS call of the flows; the IAM proof then checks that recording.
test: venv validate lint typecheck ## everything CI runs: validate, lint, typecheck, all tests, the IAM proof
	PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" $(PY) -m pytest -q $(PARALLEL) \
		--ignore=tests/iam --record-aws-calls=build/iam/calls.json
	LABELLOOP_IAM_CALLS=build/iam/calls.json $(PY) -m pytest -q tests/iam

coverage: venv ## all tests but the IAM proof, with coverage of labelloop_core and labelloop_local (slower: a tracer)
	PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" $(PY) -m pytest -q $(PARALLEL) --cov --cov-report=term:skip-covered \
		--ignore=tests/iam

bench: $(VENV)/.installed ## measure the budgets of docs/ARCHITECTURE.md
	$(PY) bench/run.py

clean: ## remove the virtual environments, build output and caches
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) .aws-sam build .pytest_cache .mypy_cache .ruff_cache .coverage
