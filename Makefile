# The README's two set-up commands. Python 3.11 + pip on a fresh machine is all they need.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test install bench clean

$(BIN)/glacierwatch: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/glacierwatch

## demo: install, then run the main job on the embedded synthetic study area.
demo: install
	$(BIN)/glacierwatch synth
	$(BIN)/glacierwatch search

## test: install, then run the whole test suite.
test: install
	$(BIN)/pytest -q

bench: install
	$(BIN)/python tests/bench/bench_model_cpu.py

clean:
	rm -rf glacierwatch-data glacierwatch-out
