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

# After `make demo`, the demo's sandbox Stripe runs beside Dagster, so its clients keep syncing.
dev: install
	$(BIN)/python -m pipelines.instance
	@if $(BIN)/python -c "import sys; from engine.demo_sandbox import demo_sandbox; sys.exit(demo_sandbox() is None)"; then \
	  $(BIN)/stripe-reports sandbox --for-demo > "$${STRIPE_REPORTS_HOME:-.stripe-reports}/sandbox.log" 2>&1 & pid=$$!; \
	  trap 'kill $$pid 2>/dev/null' EXIT INT TERM; \
	  echo "The demo sandbox Stripe runs beside Dagster (log: sandbox.log in STRIPE_REPORTS_HOME)"; $(BIN)/dagster dev; \
	else $(BIN)/dagster dev; fi

clean:
	rm -rf $(VENV) .stripe-reports build
