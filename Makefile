# voicebridge: every developer entry point. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The Lambda runtime is python3.13: use 3.13 where the machine has it (PATH or pyenv), else python3 (3.11+).
# Run each candidate: a pyenv shim named python3.13 exists (command -v finds it) but fails unless 3.13 is selected.
PYTHON ?= $(shell for p in python3.13 $$(pyenv root 2>/dev/null)/versions/3.13*/bin/python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' >/dev/null 2>&1 && { command -v $$p; exit 0; }; done; echo python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# SAM CLI pins older boto3/click/pydantic: it lives in its own virtual environment.
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
export SAM_CLI_TELEMETRY := 0
PYTEST_ARGS ?=
# make bench ARGS=--quick: options for python -m benchmarks (make itself would reject a bare --quick)
ARGS ?=

.PHONY: help install demo demo-historical test lint unit template-check bench chaos deploy smoke clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv (python3.13 where available) with the package and dev tools; idempotent

$(SAM): layers/sam-requirements.txt
	@test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install -q -r layers/sam-requirements.txt
	@touch $(SAM)

demo: install ## Replay a recorded call through the real handler against the embedded emulator; print what ServiceNow stored
	$(BIN)/voicebridge demo

demo-historical: install ## Import the post-call analysis fixtures (voicebridge backfill, in-process S3) into the embedded emulator; print what ServiceNow stored
	$(BIN)/python -m voicebridge.feed.backfill

lint: install ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# sam build runs pip for the python3.13/arm64 layer (wheels only) and needs python3.13 itself on PATH;
# where this machine has no 3.13 it is skipped loudly rather than failing the suite.
template-check: install $(SAM) ## cfn-lint, sam validate --lint and sam build on template.yaml
	$(BIN)/cfn-lint template.yaml
	$(SAM) validate --lint --template template.yaml --region us-east-1
	@if $(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then \
		echo "$(SAM) build --template template.yaml --cached  # python3.13: $(PYTHON)"; \
		PATH="$$(dirname $$(command -v $(PYTHON))):$$PATH" $(SAM) build --template template.yaml \
			--build-dir .aws-sam/build --cached --cache-dir .aws-sam/cache; \
	else \
		echo "template-check: WARNING: no python3.13 on this machine, sam build skipped" >&2; \
	fi

test: lint template-check ## The whole suite: lint, typecheck, template checks, pytest (unit, functional, integration)
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

unit: install ## Only the fast unit tests
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

bench: install ## Benchmarks (ratios against baselines measured in the same run); ARGS=--quick (or --smoke) to shorten
	$(BIN)/python -m benchmarks $(ARGS)

chaos: install ## Chaos soak: 200 calls x 60 segments under faults, crashes and duplicate deliveries
	$(BIN)/voicebridge chaos

# make deploy ENV=dev|prod: the environments of samconfig.toml (stack name, parameter overrides, change-set
# review). sam build needs python3.13 itself (the runtime of the functions and of the layer's wheels).
ENV ?= dev
STACK_NAME = $(shell $(BIN)/python -c "import tomllib; print(tomllib.load(open('samconfig.toml', 'rb'))['$(ENV)']['global']['parameters']['stack_name'])" 2>/dev/null)

deploy: install $(SAM) ## sam build + sam deploy --config-env $(ENV) (samconfig.toml); then run `make smoke ENV=$(ENV)`
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null || { \
		echo "deploy: sam build needs python3.13 (PATH or pyenv); found $(PYTHON)" >&2; exit 2; }
	PATH="$$(dirname $$(command -v $(PYTHON))):$$PATH" $(SAM) build --config-env $(ENV) --template template.yaml
	$(SAM) deploy --config-env $(ENV)

smoke: install ## voicebridge smoke --stack (the stack of ENV in samconfig.toml): is everything in place?
	@test -n "$(STACK_NAME)" || { echo "smoke: no [$(ENV).global.parameters] stack_name in samconfig.toml" >&2; exit 2; }
	$(BIN)/voicebridge smoke --stack $(STACK_NAME)

clean: ## Remove virtual environments and build output
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
