# udass: one-command set-up, test and demo.
#   make demo   create .venv if needed, install, run the main job on the embedded benchmark
#   make test   same set-up, then the test suite
# GPU users: make TORCH_SPEC="torch==2.13.0" TORCH_INDEX="https://download.pytorch.org/whl/cu128" demo
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.udass-installed
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install demo test test-slow reproduce clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m udass demo

test: $(STAMP)
	$(BIN)/python -m pytest

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

reproduce: $(STAMP)
	$(BIN)/python -m udass reproduce --profile demo

clean-venv:
	rm -rf $(VENV)
