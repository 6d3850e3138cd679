# udass: one-command set-up, test and demo.
#   make demo   create .venv if needed, install, run the main job on the embedded benchmark
#   make test   same set-up, then the test suite
#   make lab    same set-up, then JupyterLab on notebooks/ at http://127.0.0.1:8888 (LAB_FLAGS=...)
# GPU users: make TORCH_SPEC="torch==2.13.0" TORCH_INDEX="https://download.pytorch.org/whl/cu128" demo
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.udass-installed
LAB_FLAGS ?=
# JupyterLab refuses to start as root without --allow-root; containers often run as root
ALLOW_ROOT := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root)
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install demo test test-slow reproduce lab notebook-filter clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python udass/nbstrip.py install
	touch $(STAMP)

# the git filter that keeps notebook outputs out of git (udass/nbstrip.py, .gitattributes)
notebook-filter:
	$(BIN)/python udass/nbstrip.py install

demo: $(STAMP)
	$(BIN)/python -m udass demo

test: $(STAMP)
	$(BIN)/python -m pytest

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

reproduce: $(STAMP)
	$(BIN)/python -m udass reproduce --profile demo

lab: $(STAMP) notebook-filter
	$(BIN)/jupyter lab --ip 127.0.0.1 --notebook-dir notebooks $(ALLOW_ROOT) $(LAB_FLAGS)

clean-venv:
	rm -rf $(VENV)
