"""Tuning time: every objective's Optuna sweep on the 8-armed bandit (`alignlab-tune`), wall clock.

Goal: all 16 objectives in under 15 minutes on this 2-core machine. Each objective: `hydra.sweeper.n_trials`
trials (12) x `num_seeds` seeds (5) x 300 iterations, two objectives at a time (--jobs). The CPU time printed
(the sweeps' processes) is the figure to compare between machines or loads; the wall clock depends on the load.
The sweeps run in a temporary directory; the tuned-settings file goes to conf/tuned/ (or --out).

    python benchmarks/bench_tune.py task.reward=r1 sampling=online
    python benchmarks/bench_tune.py --algos dpo,ipo task.reward=r2 sampling=offline
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time

from alignlab.science.tune import tune

BUDGET_S = 15 * 60


def main() -> None:
    argv = sys.argv[1:]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="alignlab-bench-tune-") as work:
        here = os.getcwd()
        os.chdir(work)
        try:
            out = tune(argv)
        finally:
            os.chdir(here)
    seconds = time.perf_counter() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = children.ru_utime + children.ru_stime
    verdict = "within" if seconds < BUDGET_S else "OVER"
    print(f"\nTuning wall clock: {seconds:.0f} s ({seconds / 60:.1f} min), {verdict} the 15-minute budget; -> {out}")
    print(f"CPU time of the sweeps: {cpu:.0f} s (on an idle machine about {cpu / 2 / 60:.1f} min with 2 cores)")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end (shared machines vary)")


if __name__ == "__main__":
    main()
