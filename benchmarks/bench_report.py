"""The findings report's time per tier against its budget (a benchmark, not a timed test: the machine may be shared).

Budgets (issues 7 and 15), on 2 idle cores: the tier-1 report (10 seeds) in under 5 minutes, the contextual bandit
in under 10, the tier-2 report in under 30. Each report runs from scratch into a temporary directory (tier 2's
reference model comes from the cache), or into --out DIR/<task> to keep its verdicts.json (a faster report must
write the same bytes). The load average is printed at the start and the end: on a shared machine the wall time
says as much about the neighbours as about alignlab; the CPU seconds (the report and its sweeps, user + system)
say what alignlab itself spent, and CPU / cores is a lower bound on the wall time of an idle machine.

    python benchmarks/bench_report.py                    # tier 1 and tier 2: one table row per report
    python benchmarks/bench_report.py --tasks bandit     # tier 1 only
    python benchmarks/bench_report.py --tasks bandit --jobs 1 --out /tmp/reports   # one sweep at a time, kept

--sweeps times the report's parts one at a time instead: each sweep as the report launches it, then the judging
and drawing (`alignlab-report --judge-only` on those runs), one row each with its runs (seeds x jobs), CPU and
wall seconds, then the total against the budget, and the wall time the report would take on --cores idle cores,
sweeps run as `alignlab-report --jobs` runs them (the same order, the most gradient steps first, each on the first
free core, judged at the end).

    python benchmarks/bench_report.py --sweeps --tasks bandit_contextual
    python benchmarks/bench_report.py --sweeps --tasks bandit_contextual --overrides findings.seeds=1
"""

from __future__ import annotations

import argparse
import heapq
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOALS = {"bandit": 300, "bandit_contextual": 600, "synthetic_llm": 1800}


def timed(argv: list) -> tuple[subprocess.CompletedProcess, float, float]:
    """(the finished process, its wall seconds, its CPU seconds: user + system of it and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return proc, wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def count_runs(runs: Path) -> int:
    """Finished runs (one per seed) below `runs`: a run directory has metrics.csv and summary.json."""
    return sum(1 for m in runs.rglob("metrics.csv") if (m.parent / "summary.json").exists())


def report_wall(sweep_seconds: list[float], cores: int, tail: float) -> float:
    """The wall time of sweeps taking `sweep_seconds` each, started in order on the first free of `cores`
    (alignlab-report's thread pool), then `tail` seconds of judging: a lower bound when the sweeps' CPU seconds
    are given (a sweep uses one core; the judging that overlaps the sweeps is counted at the end)."""
    free = [0.0] * cores
    for seconds in sweep_seconds:
        heapq.heappush(free, heapq.heappop(free) + seconds)
    return max(free) + tail


def whole(args, task: str, jobs: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out / task if args.out else Path(tmp)
        argv = [sys.executable, "-m", "alignlab.science.report", f"task={task}", *args.overrides, *jobs, "--out", out]
        proc, wall, cpu = timed(argv)
        runs = count_runs(out / "runs")
    if proc.returncode != 0:
        sys.exit(f"the {task} report failed:\n{proc.stderr[-2000:]}")
    verdicts = [line.split(":")[0] for line in proc.stdout.splitlines() if line[:1] == "T"]  # "T1 holds"
    print(f"{task:<18}{runs:>6}{cpu:>9.0f}{wall:>9.0f}{GOALS.get(task, 0):>9}  {'; '.join(verdicts)}")


def sweeps(args, task: str) -> None:
    from alignlab.science.report import command, plan, sweep_order

    only = args.only.split(",") if args.only else None
    runnable, _ = plan(task, only)
    experiments: dict[str, list[str]] = {}
    for finding in sweep_order(runnable, task, args.overrides):  # the report's order: the most steps first
        experiments[finding.experiment] = [f.id for f in runnable if f.experiment == finding.experiment]
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out / task if args.out else Path(tmp)
        rows, seconds = [], []
        print(f"task={task} {' '.join(args.overrides)}".rstrip())
        print(f"{'part':<32}{'findings':<22}{'runs':>6}{'cpu s':>9}{'wall s':>9}")
        for experiment, ids in experiments.items():
            finding = next(f for f in runnable if f.experiment == experiment)
            argv = [sys.executable, "-m", "alignlab", *command(finding, task, args.overrides)[1:]]
            proc, wall, cpu = timed([*argv, f"hydra.sweep.dir={out / 'runs' / experiment}"])
            if proc.returncode != 0:
                sys.exit(f"the sweep {experiment} failed:\n{proc.stderr[-2000:]}")
            runs = count_runs(out / "runs" / experiment)
            rows.append((runs, cpu, wall))
            seconds.append(cpu)
            print(f"{experiment:<32}{','.join(ids):<22}{runs:>6}{cpu:>9.1f}{wall:>9.1f}", flush=True)
        judge = [sys.executable, "-m", "alignlab.science.report", f"task={task}", *args.overrides, "--judge-only"]
        only_flag = ["--only", args.only] if args.only else []
        proc, wall, cpu = timed([*judge, *only_flag, "--out", out])
        if proc.returncode != 0:
            sys.exit(f"judging failed:\n{proc.stderr[-2000:]}")
        print(f"{'judging and drawing':<32}{'':<22}{'':>6}{cpu:>9.1f}{wall:>9.1f}")
        runs, cpu_total = sum(r[0] for r in rows), sum(r[1] for r in rows) + cpu
        wall_total = sum(r[2] for r in rows) + wall
        print(f"{'total, one part at a time':<32}{'':<22}{runs:>6}{cpu_total:>9.1f}{wall_total:>9.1f}")
        estimate = report_wall(seconds, args.cores, cpu)
        print(
            f"on {args.cores} idle cores: at least {cpu_total / args.cores:.0f} s wall (CPU / cores), about "
            f"{estimate:.0f} s with the sweeps on the first free core in the report's order, then the judging; "
            f"budget {GOALS.get(task, 0)} s"
        )
        verdicts = [line.split(":")[0] for line in proc.stdout.splitlines() if line[:1] == "T"]
        print(f"verdicts: {'; '.join(verdicts)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="bandit,synthetic_llm", help="comma-separated tasks")
    parser.add_argument("--overrides", nargs="*", default=[], help="overrides given to every report")
    parser.add_argument("--jobs", default=None, help="the report's --jobs (default: its own default)")
    parser.add_argument("--out", type=Path, default=None, help="keep each report in OUT/<task> (it must not exist)")
    parser.add_argument("--sweeps", action="store_true", help="time each sweep, then the judging, one at a time")
    parser.add_argument("--only", default=None, help="with --sweeps: the report's --only (finding ids)")
    parser.add_argument("--cores", type=int, default=2, help="with --sweeps: the idle cores of the wall estimate")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start (a busy machine is slower)")
    if not args.sweeps:
        print(f"{'task':<18}{'runs':>6}{'cpu s':>9}{'wall s':>9}{'budget':>9}  verdicts")
    jobs = ["--jobs", args.jobs] if args.jobs else []
    for task in args.tasks.split(","):
        if args.sweeps:
            sweeps(args, task)
        else:
            whole(args, task, jobs)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
