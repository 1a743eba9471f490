"""Tier-1 speed, printed as a table (not a timed test: this machine is shared and noisy).

1. One bandit run (K = 8, 500 iterations), compute only (after imports): median of 5 seeds, per objective.
   Goal: under 1 s.
2. The whole tier-1 grid of Tajwar et al. from one command (`alignlab -m experiment=tajwar_bandit_grid`:
   16 objectives x R1, R2 x offline, online x 10 seeds = 640 runs), wall clock. Goal: under 2 minutes.

    python benchmarks/bench_bandit.py            # both
    python benchmarks/bench_bandit.py --no-grid  # only the single runs
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from alignlab.core.objectives import DPO, GRPO, IPO, KTO, PPO, RLOO, SFT, BestOfN, Reinforce
from alignlab.core.sampling import SamplingConfig
from alignlab.core.train import TrainConfig, train
from bandits import BanditTask


def single_runs(iterations: int = 500, seeds: int = 5) -> None:
    torch.set_num_threads(1)
    task = BanditTask()
    train(task, DPO(), SamplingConfig(), TrainConfig(iterations=5, progress=False))  # warm up lazy imports
    print(f"\nOne bandit run: K = 8, {iterations} iterations, B = 8 prompts x n = 4 samples, compute after imports")
    print(f"{'objective':<22}{'regime':<9}{'median s':>10}{'min s':>9}{'max s':>9}{'iter/s':>9}")
    for objective in (DPO(), IPO(), KTO(), SFT(), BestOfN(negative="worse"), Reinforce(), RLOO(), GRPO(), PPO()):
        for regime in (SamplingConfig(name="online"), SamplingConfig(name="offline", sync_every=None)):
            times = []
            for seed in range(seeds):
                start = time.perf_counter()
                train(task, objective, regime, TrainConfig(iterations=iterations, progress=False), seed=seed)
                times.append(time.perf_counter() - start)
            median = statistics.median(times)
            name = objective.name + (
                "" if getattr(objective, "negative", "none") == "none" else f"_neg_{objective.negative}"
            )
            print(
                f"{name:<22}{regime.name:<9}{median:>10.3f}{min(times):>9.3f}{max(times):>9.3f}"
                f"{iterations / median:>9.0f}"
            )


def grid() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable,
            "-m",
            "alignlab",
            "-m",
            "experiment=tajwar_bandit_grid",
            f"hydra.sweep.dir={tmp}/grid",
        ]
        start = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"the grid failed:\n{proc.stderr[-3000:]}")
        runs = len(list(Path(tmp, "grid").rglob("seed=*/summary.json")))
        results = {}
        for job in Path(tmp, "grid").glob("*/summary.json"):
            recorded = yaml.safe_load((job.parent / ".hydra" / "overrides.yaml").read_text())
            overrides = dict(o.split("=", 1) for o in recorded)
            summary = json.loads(job.read_text())
            results[(summary["algo"], overrides["task.reward"], summary["sampling"])] = summary
    print("\nThe tier-1 grid from one command: alignlab -m experiment=tajwar_bandit_grid (2 joblib workers)")
    print(f"{'runs':>6}{'jobs':>6}{'wall s':>9}{'s / run':>9}{'goal s':>8}")
    print(f"{runs:>6}{runs // 10:>6}{wall:>9.1f}{wall / runs:>9.3f}{120:>8}")
    columns = [("hard", "online"), ("hard", "offline"), ("easy", "online"), ("easy", "offline")]  # R1 hard, R2 easy
    print("\nFinal expected reward, mean ± s.d. over 10 seeds (Markdown):\n")
    print("| algo | " + " | ".join(f"{'R1' if r == 'hard' else 'R2'} {s}" for r, s in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for algo in sorted({a for a, _, _ in results}):
        cells = [results.get((algo, r, s)) for r, s in columns]
        print(f"| `{algo}` | " + " | ".join(f"{c['reward']:.3f} ± {c['reward_std']:.3f}" for c in cells) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-grid", action="store_true", help="skip the 640-run grid")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs")
    single_runs()
    if not args.no_grid:
        grid()
