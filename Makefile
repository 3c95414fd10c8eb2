# Everything runs from a project-local virtual environment and node_modules, created on first use.
# The venv is constrained to the Lambda layer's pins, so tests run the versions that are deployed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CDK := node_modules/.bin/cdk
# checkov has a venv of its own: it pins boto3 and packaging to versions the project's venv must not be held to.
CHECKOV_VENV := .venv-checkov
CHECKOV := CKV_SKIP_PACKAGE_UPDATE_CHECK=true $(CHECKOV_VENV)/bin/checkov --framework cloudformation --skip-download
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export AWS_DEFAULT_REGION ?= eu-west-2
STAGE ?= dev

.PHONY: help install test test-fast lint bench demo serve synth deploy diff contracts postcodes clean

help:
	@echo "make demo       run the whole pipeline on the embedded local cloud"
	@echo "make test       create the venv, install everything, run every test"
	@echo "make bench      issue 17 goals (cold start, CPU, throughput, resume, requests, memory); synthesis; postcodes"
	@echo "make synth      synthesize the CDK app (STAGE=$(STAGE)) with cdk-nag, then cfn-lint and checkov"
	@echo "make diff       cdk diff of every stack (STAGE=$(STAGE)) against the deployed ones"
	@echo "make deploy     deploy to the AWS account in your credentials (STAGE=$(STAGE))"
	@echo "make serve      leave the local cloud running for the AWS CLI and boto3"
	@echo "make contracts  regenerate docs/ contracts from the pydantic models"
	@echo "make postcodes  build the postcode index (POSTCODES_CSV=<NSPL or ONSPD CSV>, default the dev extract)"

$(BIN)/.installed: pyproject.toml layers/dependencies/requirements.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	mkdir -p build && sed 's/\[[^]]*\]//' layers/dependencies/requirements.txt > build/layer-constraints.txt
	$(BIN)/pip install --quiet -e '.[dev]' -c build/layer-constraints.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(CHECKOV_VENV)/.installed: pyproject.toml
	test -d $(CHECKOV_VENV) || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet --group checkov
	touch $@

install: $(BIN)/.installed node_modules/.installed $(CHECKOV_VENV)/.installed

test: lint
	$(BIN)/python -m pytest -n 2 --dist loadfile --cov=birthnotify --cov-report=term:skip-covered

test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest -m "not infra and not e2e"

lint: install
	$(BIN)/ruff check layers functions infra cli tests bench
	$(BIN)/ruff format --check layers functions infra cli tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

bench: install
	$(BIN)/python -m bench.ingest_bench
	$(BIN)/python -m bench.synth_bench
	$(BIN)/python -m bench.postcode_bench

demo: install
	$(BIN)/birthnotify demo

serve: install
	$(BIN)/birthnotify local serve

contracts: $(BIN)/.installed
	$(BIN)/birthnotify contracts --write docs

POSTCODES_CSV ?= config/postcodes.csv
postcodes: $(BIN)/.installed
	$(BIN)/birthnotify postcodes build $(POSTCODES_CSV) --output build/postcodes.idx

synth: install
	rm -rf cdk.out
	$(CDK) synth --context stage=$(STAGE) --quiet
	$(BIN)/cfn-lint cdk.out/*.template.json
	$(CHECKOV) --quiet --compact $$(for template in cdk.out/*.template.json; do printf -- '--file %s ' "$$template"; done)

deploy: install
	$(CDK) deploy --context stage=$(STAGE) --all --require-approval broadening

diff: install
	$(CDK) diff --context stage=$(STAGE)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules cdk.out build .pytest_cache
