# One entry point for humans and CI. Each target sets itself up from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= config/acd.example.yaml

.PHONY: setup run demo-calls test lint bench reliability check-config clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/acd serve --config $(CONFIG) --demo

# Calls flowing without an Asterisk: the simulated PBX places calls to a server on this config.
demo-calls: $(STAMP)
	$(BIN)/python -m acd.pbxsim.demo --config $(CONFIG)

check-config: $(STAMP)
	$(BIN)/acd check-config $(CONFIG)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy acd

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy acd
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --durations=15

# The reliability suite at full strength: more SIGKILLs, more hypothesis examples.
reliability: $(STAMP)
	ACD_RELIABILITY_KILLS=10 HYPOTHESIS_PROFILE=reliability $(BIN)/python -m pytest -q -s \
		tests/test_restart.py tests/reliability tests/test_core_properties.py tests/test_dispatcher.py tests/asterisk \
		tests/cluster/test_failover.py tests/cluster/test_calls_failover.py

bench: $(STAMP)
	PYTHONPATH=. $(BIN)/python -m bench

clean:
	rm -rf $(VENV) data .pytest_cache
