# VisionRAG: `make run` brings the stack up, `make test` runs the suite. `make help` lists the rest.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
VLLM_VENV := .venv-vllm
MODELS := models
PROFILE ?=

.PHONY: help install test lint run stop bench clean

help: ## Show the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

# ---- gateway environment ------------------------------------------------------------------------
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed ## Create the gateway's virtual environment

# ---- serving: vLLM's own environment and the test models -----------------------------------------
# (serving section: vLLM venv, tiny VLM, profiles)

# ---- memory: CLIP models for fastembed ------------------------------------------------------------
# (memory section: tiny / full-size CLIP builds)

# ---- test ------------------------------------------------------------------------------------------
test: install ## Run the whole test suite (installs everything it needs first)
	$(VENV)/bin/python -m pytest

lint: install ## Static checks
	$(VENV)/bin/ruff check gateway serving tests bench

clean: ## Remove environments, built models and local data
	rm -rf $(VENV) $(VLLM_VENV) $(MODELS) data .pytest_cache
