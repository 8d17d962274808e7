# The two set-up commands (README): `make run` and `make test`. Both create .venv and install
# what they need from PyPI; nothing else is installed by hand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.9

.PHONY: install run test screenshots lint typecheck check-migrations bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --python $(BIN)/python -c constraints.txt -e ".[dev]"
	touch $@

install: $(VENV)/.installed

## make run: install, then serve on http://localhost:3003 (embedded PostgreSQL, local objects).
run: install
	$(BIN)/mediaplane serve

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

## make test: install, lint, type-check, then the whole suite against real servers.
## (Debian's chromium is installed for the web console's browser tests when missing.)
## The suite must leave the git tree as it found it (scripts/check-clean-tree.sh).
test: install lint typecheck
	bash scripts/ensure-chromium.sh
	sh scripts/check-clean-tree.sh $(BIN)/pytest -q

## make screenshots: run the console's browser tests and refresh docs/screenshots/ (tracked);
## `make test` writes them to var/screenshots/ (ignored) instead.
screenshots: install
	bash scripts/ensure-chromium.sh
	MEDIAPLANE_REFRESH_SCREENSHOTS=1 $(BIN)/pytest -q tests/console

bench: install
	$(BIN)/python bench/images_get.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
