# Two commands for a newcomer: `make run` (the main job) and `make test` (the test suite).
# Both first build .venv if needed: PyTorch for your platform, then augscale with its dev extra.
PY ?= python3
VENV ?= .venv
# torch==2.13.0 is the CPU wheel on this kind of machine's disk; on a GPU machine set
# TORCH="torch --index-url https://download.pytorch.org/whl/cu124" (or your CUDA build).
TORCH ?= torch==2.13.0
# The raw data sets: the workplace copy beside the repository if present, else the Hugging Face Hub.
export AUGSCALE_DATA_DIR ?= $(if $(wildcard ../shared/datasets/gsm8k),$(abspath ../shared/datasets),)

.PHONY: run test install
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	$(VENV)/bin/pip install -q $(TORCH)
	$(VENV)/bin/pip install -q -e ".[dev]"
	touch $@

run: install
	$(VENV)/bin/augscale demo

test: install
	$(VENV)/bin/python -m pytest
