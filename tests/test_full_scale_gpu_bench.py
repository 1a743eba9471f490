"""benchmarks/bench_full_scale_gpu.py --tiny: the GPU benchmark's code path (generation, LoRA training, full
fine-tuning under FSDP2 on a group of one) on a CPU, so that the script is ready the day a GPU is at hand."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("lora", ["16", "0"])
def test_the_tiny_path_prints_every_table(lora):
    pytest.importorskip("transformers")
    command = [sys.executable, "benchmarks/bench_full_scale_gpu.py", "--tiny", "--steps", "1", "--warmup", "0"]
    command += ["--objectives", "grpo", "--lora-r", lora]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)  # hang guard
    assert result.returncode == 0, result.stderr[-2000:]
    generation = re.search(r"\| transformers \| ([0-9.]+) \|", result.stdout)
    assert generation and float(generation.group(1)) > 0
    row = re.search(r"\| grpo \| (policy \+ reference[^|]*) \| [0-9.e-]+ \| ([0-9.]+) \| ([0-9.]+) \|", result.stdout)
    assert row, result.stdout
    assert ("adapters off" in row.group(1)) == (lora != "0")
    assert float(row.group(2)) > 0 and float(row.group(3)) > 0  # seconds per iteration, trained tokens/s
    assert f"LoRA r={'off (full)' if lora == '0' else lora}" in result.stdout
