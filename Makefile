# The two commands: `make demo` and `make test`. Each creates .venv and installs first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UNITS ?= 15
LEVELS ?= 3

.PHONY: demo test lint typecheck importlint install services bench fuzz clean wheelhouse

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Starts what the project needs on this machine (services, broker plugins, Debian tools).
services:
	bash scripts/setup-machine.sh

demo: install
	@bash scripts/check-broker.sh
	$(BIN)/python -m docex.cli.main demo --units $(UNITS) --levels $(LEVELS)

lint: install
	$(BIN)/ruff check docex tests bench

typecheck: install
	$(BIN)/mypy docex/protocols docex/pki

importlint: install
	$(BIN)/lint-imports

test: install services lint typecheck importlint
	$(BIN)/pytest -q -ra

# The parsers' fuzzers for FUZZ_SECONDS in all (default one hour), shared among the targets;
# prints executions and crashers per target. `make test` runs them bounded.
FUZZ_SECONDS ?= 3600
fuzz: install
	DOCEX_FUZZ_SECONDS=$(FUZZ_SECONDS) DOCEX_FUZZ_CRASH_LOG=fuzz-crashers.log $(BIN)/pytest -q -p no:cacheprovider -o timeout=0 tests/security -k fuzz

bench: install
	$(BIN)/python -m bench

# Everything docex needs as wheels, for the county's isolated network:
#   pip install --no-index --find-links wheelhouse docex   (docs/guide-operations.md)
wheelhouse: install
	rm -rf wheelhouse
	$(BIN)/pip wheel -q --wheel-dir wheelhouse .
	@ls wheelhouse | wc -l | xargs echo "wheels:"

clean:
	rm -rf wheelhouse $(VENV) .pytest_cache .mypy_cache .ruff_cache
