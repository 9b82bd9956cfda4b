# The two README commands: `make demo` and `make test`. Both start from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.stripe-reports/dagster_home

.PHONY: install demo test lint bench dev clean system-deps deploy-check

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: install
	$(BIN)/stripe-reports demo

system-deps:
	bash scripts/system-deps.sh

test: install system-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider

# deploy/Dockerfile's steps run as a script (no Docker needed), then its code server answers.
deploy-check: install
	STRIPE_REPORTS_IMAGE_CHECK=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_deploy_files.py

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: install
	$(BIN)/python -m benchmarks

dev: install
	$(BIN)/python -m pipelines.instance
	$(BIN)/dagster dev

clean:
	rm -rf $(VENV) .stripe-reports build
