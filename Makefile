# The project's user interface. `make local` runs the service, `make test` tests it.
# Both create the virtualenv (.venv) and MiniStack's own (.local/ministack-venv) on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
STAGE ?= dev
ROLE ?= parent
PYTEST_ARGS ?=
PARAMS ?=
EMULATOR_PORT ?= 4566

.DEFAULT_GOAL := help
.PHONY: help venv emulator test unit integration e2e reliability lint types format local token mail demo \
        bench package deploy smoke destroy aws-emulator reconcile redrive rotate-page-token-key clean-local

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) >&2
	@$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt >&2
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP) ## create/update the virtualenv

emulator: venv ## install MiniStack (DynamoDB + SQS emulator) into .local/ministack-venv
	@$(BIN)/python -m tools.local.ministack --install >&2

test: venv emulator ## lint, then every test (unit, integration, e2e)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	@$(MAKE) --no-print-directory templates
	$(BIN)/pytest $(PYTEST_ARGS)

unit: venv ## unit tests only (no I/O)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: venv emulator ## integration tests only (moto and MiniStack, chalice test client)
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

e2e: venv emulator ## end-to-end tests against the local stack
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

reliability: venv emulator ## the long races, faults and fuzzing runs (bounded versions run in make test)
	RELIABILITY_SCALE=long $(BIN)/pytest tests/reliability $(PYTEST_ARGS)

bench: venv emulator ## benchmarks, says how long first; results and history under bench/results/ (BENCH_ARGS=--help for options)
	@$(BIN)/python -m bench $(BENCH_ARGS)

lint: venv ## ruff, mypy (strict), the import contracts (pyproject.toml), then cfn-lint and checkov on the templates
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	@$(MAKE) --no-print-directory templates

# checkov pins its own boto3: a virtualenv of its own, installed on first use.
CHECKOV_VENV := .local/checkov-venv
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(shell cksum < requirements-checkov.txt | cut -d' ' -f1)
TEMPLATES := $(wildcard infra/*.yaml)

$(CHECKOV_STAMP): requirements-checkov.txt
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV) >&2
	@$(CHECKOV_VENV)/bin/pip install -q --disable-pip-version-check -r requirements-checkov.txt >&2
	@rm -f $(CHECKOV_VENV)/.installed-* && touch $@

.PHONY: templates
templates: venv $(CHECKOV_STAMP) ## cfn-lint + checkov (.checkov.yaml) on infra/*.yaml and the packaged dev and prod templates
	@for stage in dev prod; do $(BIN)/python -m tools.deploy package --stage $$stage --out build/lint/package-$$stage || exit 1; done
	$(CHECKOV_VENV)/bin/checkov --config-file .checkov.yaml --quiet $(addprefix -f ,$(TEMPLATES)) \
		-f build/lint/package-dev/sam.json -f build/lint/package-prod/sam.json

types: venv ## mypy, strict, on chalicelib/, app.py and the Protocol checks (tests/typing_checks.py)
	$(BIN)/mypy

format: venv ## ruff fix + format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

local: venv emulator ## run the whole service locally (PORT=8000)
	@$(BIN)/python -m tools.local

token: venv ## print a bearer token for the local stack: make token USER=alice ROLE=parent|nanny [EMAIL=a@b.c]
	@$(BIN)/python -m tools.local.tokens --user "$(USER)" --role "$(ROLE)" $(if $(EMAIL),--email "$(EMAIL)")

mail: venv ## print the emails the running local stack has sent, one JSON object per line
	@$(BIN)/python -m tools.local.mail

demo: venv ## book a job with 20 applicants against the running local stack
	@$(BIN)/python -m tools.local.demo

clean-local: ## forget the local stack's data (keeps the signing key)
	rm -rf .local/data

package: venv ## CloudFormation for the app + resources: make package STAGE=prod
	@$(BIN)/python -m tools.deploy package --stage $(STAGE)

deploy: venv ## deploy the stage's stack, then smoke-test it: make deploy STAGE=dev [PARAMS="Name=value ..."] [VIA=chalice] [SMOKE=0]
	@$(BIN)/python -m tools.deploy deploy --stage $(STAGE) $(if $(VIA),--via $(VIA)) \
		$(foreach p,$(PARAMS),--parameter $(p)) $(if $(filter 0,$(SMOKE)),--no-smoke) $(DEPLOY_ARGS)

smoke: venv ## smoke-test a deployed stage through its API: make smoke STAGE=dev
	@$(BIN)/python -m tools.deploy.smoke --stage $(STAGE)

destroy: venv ## delete a stage, keeping its table (asks first; YES=1 does not): make destroy STAGE=dev
	@$(BIN)/python -m tools.deploy destroy --stage $(STAGE) $(if $(filter 1,$(YES)),--yes)

aws-emulator: venv ## an emulated AWS account (MiniStack) on EMULATOR_PORT (4566) to deploy to
	@EMULATOR_PORT=$(EMULATOR_PORT) $(BIN)/python -m tools.local.ministack --port $(EMULATOR_PORT)

reconcile: venv ## queue declines a crash left behind: make reconcile STAGE=dev
	@$(BIN)/python -m tools.ops reconcile --stage $(STAGE)

redrive: venv ## move DLQ messages back to the declines queue: make redrive STAGE=dev
	@$(BIN)/python -m tools.ops redrive --stage $(STAGE)

rotate-page-token-key: venv ## one step of replacing the page-token key (run twice, >= 5 min apart): make rotate-page-token-key STAGE=dev
	@$(BIN)/python -m tools.ops rotate-page-token-key --stage $(STAGE) $(if $(filter 1,$(FORCE)),--force)
