"""The cost of safety: checkpointing overhead on a 3000-iteration bandit run, and the start-up time.

1. `alignlab`'s run (config -> train -> metrics.csv, summary.json) of the default bandit task, 3000
   iterations, with train.checkpoint_every=0 (never) and =25, in this process after a warm-up; median of
   `--repeats` runs each, interleaved. Goal: overhead under 20%. A checkpoint serialises the policy, optimizer and
   random states, appends the metric rows since the last one, and hands the bytes to a background thread that
   writes them with their SHA-256 beside them, fsynced (alignlab/storage/rundir.py).
2. Start-up: a whole `python -m alignlab` process of 1 bandit iteration (imports, config composition and
   checks, task, one iteration, outputs), median of `--repeats`. Goal: under 1.5 s on an idle machine.

    python benchmarks/bench_checkpoint.py
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_module

from alignlab.runs.cli import run_experiment


def one_run(checkpoint_every: int, iterations: int, directory: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one run."""
    overrides = [f"train.iterations={iterations}", f"train.checkpoint_every={checkpoint_every}", "train.progress=false"]
    with initialize_config_module("alignlab.conf", version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    wall, cpu = time.perf_counter(), time.process_time()
    run_experiment(cfg, directory)
    return time.perf_counter() - wall, time.process_time() - cpu


def checkpoint_overhead(iterations: int, repeats: int) -> None:
    torch.set_num_threads(1)
    times: dict[int, list[tuple[float, float]]] = {0: [], 25: []}
    with tempfile.TemporaryDirectory() as tmp:
        one_run(25, 50, Path(tmp) / "warmup")
        for repeat in range(repeats):
            for every in times:
                times[every].append(one_run(every, iterations, Path(tmp) / f"{every}-{repeat}"))
    print(f"bandit, {iterations} iterations, median of {repeats} runs each (CPU: this process's user + system time,")
    print("which a busy machine inflates less than the wall clock):")
    median = {}
    for every, runs in times.items():
        wall, cpu = statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)
        median[every] = wall, cpu
        print(f"  checkpoint_every={every:<3}  wall {wall:6.2f} s   CPU {cpu:6.2f} s")
    for i, what in enumerate(("wall", "CPU")):
        overhead = 100 * (median[25][i] / median[0][i] - 1)
        print(f"  overhead of checkpointing ({what}): {overhead:+.1f}%  (goal: under 20%)")


def startup(repeats: int) -> None:
    command = [sys.executable, "-m", "alignlab", "train.iterations=1", "train.progress=false", "plot=false"]
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(command, cwd=tmp, check=True, capture_output=True)  # warm the file cache
        for repeat in range(repeats):
            start = time.perf_counter()
            subprocess.run([*command, f"seed={repeat}"], cwd=tmp, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
    print(f"start-up, `python -m alignlab train.iterations=1` whole process, median of {repeats}:")
    print(f"  {statistics.median(times):.2f} s  (min {min(times):.2f}, max {max(times):.2f}; goal: under 1.5 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-startup", action="store_true")
    args = parser.parse_args()
    checkpoint_overhead(args.iterations, args.repeats)
    if not args.no_startup:
        startup(args.repeats)


if __name__ == "__main__":
    main()
