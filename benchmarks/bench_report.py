"""The findings report's wall time per tier (a benchmark, not a timed test: the machine may be shared).

Goals (issues 7 and 15), on 2 idle cores: the tier-1 report (10 seeds) in under 5 minutes, the contextual bandit
in under 10, the tier-2 report in under 30. Each report runs from scratch into a temporary directory (tier 2's
reference model comes from the cache), or into --out DIR/<task> to keep its verdicts.json (a faster report must
write the same bytes). The load average is printed at the start and the end: on a shared machine the wall time
says as much about the neighbours as about alignlab; the CPU seconds (the report and its sweeps, user + system)
say what alignlab itself spent.

    python benchmarks/bench_report.py                    # tier 1 and tier 2
    python benchmarks/bench_report.py --tasks bandit     # tier 1 only
    python benchmarks/bench_report.py --tasks bandit_contextual --overrides findings.seeds=3
    python benchmarks/bench_report.py --tasks bandit --jobs 1 --out /tmp/reports   # one sweep at a time, kept
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOALS = {"bandit": 300, "bandit_contextual": 600, "synthetic_llm": 1800}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="bandit,synthetic_llm", help="comma-separated tasks")
    parser.add_argument("--overrides", nargs="*", default=[], help="overrides given to every report")
    parser.add_argument("--jobs", default=None, help="the report's --jobs (default: its own default)")
    parser.add_argument("--out", type=Path, default=None, help="keep each report in OUT/<task> (it must not exist)")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load:.1f} at the start (a busy machine is slower)")
    print(f"{'task':<16}{'wall s':>9}{'cpu s':>9}{'goal s':>9}  verdicts")
    jobs = ["--jobs", args.jobs] if args.jobs else []
    for task in args.tasks.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            out = args.out / task if args.out else Path(tmp)
            cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "alignlab.science.report", f"task={task}", *args.overrides, *jobs, "--out", out],
                capture_output=True,
                text=True,
            )
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
        if proc.returncode != 0:
            sys.exit(f"the {task} report failed:\n{proc.stderr[-2000:]}")
        verdicts = [line.split(":")[0] for line in proc.stdout.splitlines() if line[:1] == "T"]  # "T1 holds"
        print(f"{task:<16}{wall:>9.0f}{cpu:>9.0f}{GOALS.get(task, 0):>9}  {'; '.join(verdicts)}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
