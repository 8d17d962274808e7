# The two set-up commands (README): `make run` and `make test`. Both create .venv and install
# what they need from PyPI; nothing else is installed by hand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.9

.PHONY: install run test screenshots lint typecheck check-migrations bench clean image container-test

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

## make image: build the container image (docker, or podman where no docker daemon runs).
image:
	bash scripts/image.sh

## make container-test: build the image, then prove it in containers (docs/deploy.md): compose
## config, the image alone on port 8003, and 2 API + 2 worker containers on a real PostgreSQL
## and S3 with a worker killed mid-run. Not part of `make test` (about 10 minutes on 2 cores).
container-test: install
	$(BIN)/python scripts/container-test.py

bench: install
	$(BIN)/python bench/images_get.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
