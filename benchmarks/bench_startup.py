"""Start-up: from the start of an `alignlab task=bandit` process to its first iteration. Goal: under 1.5 s.

Each run is a whole `alignlab task=bandit plot=false force=true` process (300 iterations, the task's default),
started through a few lines that stamp, on the system's monotonic clock, the moment train() starts its loop
(it builds the progress bar) and the moment the command returns. Its wall and CPU seconds are the OS's
accounting of the finished child. A row splits the wall clock into start-up (process start -> first
iteration), the run (the iterations, the final evaluation, summary.json) and the interpreter's exit. With
`--vs PYTHON` a second interpreter (another checkout's venv) runs the same command in turn, A B A B ..., and the
ratio A/B is taken pair by pair, which keeps it meaningful when a busy machine's speed drifts.

    python benchmarks/bench_startup.py --runs 10
    python benchmarks/bench_startup.py --runs 10 --vs ../main/.venv/bin/python
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ARGS = ["task=bandit", "plot=false", "force=true", "train.progress=false"]
STAMPED = """
import sys, time
import alignlab.core.train
progress_bar = alignlab.core.train.tqdm
def first_iteration(*args, **kwargs):
    print("first iteration", time.monotonic(), file=sys.stderr, flush=True)
    return progress_bar(*args, **kwargs)
alignlab.core.train.tqdm = first_iteration
from alignlab.runs.cli import main
sys.argv[0] = "alignlab"
main()
print("returned", time.monotonic(), file=sys.stderr, flush=True)
"""


def one_run(python: str, run_dir: Path) -> dict[str, float]:
    """Whole-process wall and CPU seconds of one run, and the wall clock split at the first iteration and at the
    command's return."""
    start = time.monotonic()
    child = subprocess.Popen(
        [python, "-c", STAMPED, *ARGS, f"hydra.run.dir={run_dir}"],
        cwd=run_dir.parent,  # not this checkout: `python -c` would import its alignlab whatever the interpreter
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    end = time.monotonic()
    child.returncode = os.waitstatus_to_exitcode(status)
    stamps = {}
    for line in stderr.splitlines():
        if line.startswith(("first iteration ", "returned ")):
            what, when = line.rsplit(" ", 1)
            stamps[what] = float(when)
    if child.returncode != 0 or len(stamps) != 2:
        raise SystemExit(f"{python} -m alignlab {' '.join(ARGS)} failed ({child.returncode}):\n{stderr}")
    return {
        "wall": end - start,
        "cpu": usage.ru_utime + usage.ru_stime,
        "to first iteration": stamps["first iteration"] - start,
        "run": stamps["returned"] - stamps["first iteration"],
        "exit": end - stamps["returned"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--vs", metavar="PYTHON", help="a second interpreter (another checkout) to compare against")
    parser.add_argument("--python", default=sys.executable, help="the interpreter to time (default: this one)")
    args = parser.parse_args()
    pythons = {"A": args.python} | ({"B": args.vs} if args.vs else {})
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in pythons}
    with tempfile.TemporaryDirectory() as tmp:
        for name, python in pythons.items():  # warm-up: the file cache, .pyc files
            one_run(python, Path(tmp) / f"warmup-{name}")
        for repeat in range(args.runs):
            for name, python in pythons.items():
                runs[name].append(one_run(python, Path(tmp) / f"{name}-{repeat}"))
    load = os.getloadavg()[0]
    print(f"`alignlab {' '.join(ARGS)}`, median of {args.runs} runs (min - max); load average {load:.1f}")
    for name, python in pythons.items():
        print(f"{name}: {python}")
        for key in runs[name][0]:
            values = [r[key] for r in runs[name]]
            print(f"  {key:20s} {statistics.median(values):6.2f} s  ({min(values):.2f} - {max(values):.2f})")
    if args.vs:
        for key in ("wall", "cpu", "to first iteration"):
            ratios = [a[key] / b[key] for a, b in zip(runs["A"], runs["B"], strict=True)]
            print(f"A/B {key:20s} {statistics.median(ratios):.3f}  (median of the {args.runs} pair ratios)")


if __name__ == "__main__":
    main()
