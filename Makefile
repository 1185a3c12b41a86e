# labelloop developer commands. `make demo` runs the whole loop locally; `make test` runs every check.
PYTHON ?= python3
VENV := .venv
SAM_VENV := .venv-sam
PY := $(VENV)/bin/python
SAM := $(SAM_VENV)/bin/sam
SAM_RUNTIME ?= python3.11

.PHONY: help venv demo test lint typecheck validate unit integration browser iam iam-mutations build bench clean

help:
	@echo "make demo      run the whole loop on the local stack (no AWS account needed)"
	@echo "make test      sam validate --lint, ruff, mypy, unit, integration and browser tests"
	@echo "make iam       prove every AWS call of the flows is allowed by its function's role (DESIGN §11)"
	@echo "make bench     measure the DESIGN.md §8 budgets"

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

venv: $(VENV)/.installed $(SAM_VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/labelloop local demo --replay

validate: $(SAM_VENV)/.installed
	$(SAM) validate --lint

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

build: $(SAM_VENV)/.installed
	$(SAM) build --parameter-overrides PythonRuntime=$(SAM_RUNTIME)

unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit -q

integration: venv
	PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" $(PY) -m pytest tests/integration -q

browser: $(VENV)/.installed
	$(PY) -m pytest tests/browser -q

# Runs the flow tests with every AWS call recorded (build/iam/calls.json), then checks each call
# against its function's role in the SAM-translated template.yaml.
iam: $(VENV)/.installed
	$(PY) -m pytest tests/iam -q -m iam

# Removes each action / statement of each role in turn: every removal must fail the proof.
iam-mutations: $(VENV)/.installed
	$(PY) bench/iam_mutations.py

test: venv validate lint typecheck
	PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" $(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
