# fleetkit — `make demo` and `make test` do all set-up on a fresh Debian/Ubuntu machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-16)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install test demo lint bench-worker bench-autoscaler clean

install: $(STAMP) redis-server

# Re-installs only when pyproject.toml changes; the stamp is written last so a failed install
# is retried on the next run instead of being taken for done.
$(STAMP):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

.PHONY: redis-server
redis-server:
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server with apt-get"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }

test: install
	$(BIN)/pytest

demo: install
	$(BIN)/python scripts/demo.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

bench-worker: install
	$(BIN)/python bench/worker.py

bench-autoscaler: install
	$(BIN)/python bench/autoscaler.py
