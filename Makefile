# The two commands a newcomer needs:  `make demo`  and  `make test`  (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Torch is pinned to the release our build machines hold offline; pip resolves the rest from pyproject.toml.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: setup demo test lint typecheck unit clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PINS)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Train the default model on $$CXR_DATA, export it, start the service and classify a real film.
demo: setup
	VENV=$(VENV) bash scripts/demo.sh

test: setup lint typecheck unit

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy service training tests

unit:
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
