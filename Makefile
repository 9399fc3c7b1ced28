# The README's two set-up commands. Python 3.11 + pip on a fresh machine is all they need.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test test-unit install bench clean

$(BIN)/glacierwatch: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

install: $(BIN)/glacierwatch

## demo: install, then run the whole study on the embedded synthetic study area (generated if missing).
demo: install
	$(BIN)/glacierwatch run

## test: install, then run the whole test suite.
test: install
	$(BIN)/pytest -q

## test-unit: the fast layer for everyday work (< 2 min): no generated area, run, training or services.
test-unit: install
	$(BIN)/pytest -q -m unit

bench: install
	$(BIN)/python tests/bench/run_all.py

clean:
	rm -rf glacierwatch-data glacierwatch-out
