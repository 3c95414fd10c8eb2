# Everything runs from a project-local virtual environment and node_modules, created on first use.
# The venv is constrained to the Lambda layer's pins, so tests run the versions that are deployed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CDK := node_modules/.bin/cdk
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export AWS_DEFAULT_REGION ?= eu-west-2
STAGE ?= dev

.PHONY: help install test test-fast lint bench demo serve synth deploy diff contracts clean

help:
	@echo "make demo       run the whole pipeline on the embedded local cloud"
	@echo "make test       create the venv, install everything, run every test"
	@echo "make bench      ingest throughput, batching and memory figures"
	@echo "make synth      synthesize the CDK app (STAGE=$(STAGE)) with cdk-nag and cfn-lint"
	@echo "make deploy     deploy to the AWS account in your credentials (STAGE=$(STAGE))"
	@echo "make serve      leave the local cloud running for the AWS CLI and boto3"
	@echo "make contracts  regenerate docs/ contracts from the pydantic models"

$(BIN)/.installed: pyproject.toml layers/dependencies/requirements.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	mkdir -p build && sed 's/\[[^]]*\]//' layers/dependencies/requirements.txt > build/layer-constraints.txt
	$(BIN)/pip install --quiet -e '.[dev]' -c build/layer-constraints.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(BIN)/.installed node_modules/.installed

test: install
	$(BIN)/python -m pytest -n 2 --dist loadfile

test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest -m "not infra and not e2e"

lint: install
	$(BIN)/ruff check layers functions infra cli tests bench

bench: $(BIN)/.installed
	$(BIN)/python -m bench.ingest_bench

demo: install
	$(BIN)/birthnotify demo

serve: install
	$(BIN)/birthnotify local serve

contracts: $(BIN)/.installed
	$(BIN)/birthnotify contracts --write docs

synth: install
	$(CDK) synth --context stage=$(STAGE) --quiet
	$(BIN)/cfn-lint cdk.out/*.template.json

deploy: install
	$(CDK) deploy --context stage=$(STAGE) --all --require-approval broadening

diff: install
	$(CDK) diff --context stage=$(STAGE)

clean:
	rm -rf $(VENV) node_modules cdk.out build .pytest_cache
