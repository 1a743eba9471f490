"""`alignlab-report`: run the findings suite on one tier and write report/REPORT.md and report/index.html.

    alignlab-report                         # task=bandit (tier 1): every finding, about a few minutes
    alignlab-report task=synthetic_llm      # tier 2
    alignlab-report task=bandit --only T1,T5 --out my_report train.iterations=50   # overrides go to every run

Per finding (alignlab/science/findings.py): the claim and its paper, the command that reproduces it, its figures, the
measured numbers (mean and s.d. over seeds) and a verdict computed by the stated criterion. The runs live in
OUT/runs/<experiment>/: re-running the command skips every finished run and seed (resumable).
"""

from __future__ import annotations

import argparse
import html
import importlib.resources
import math
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf
from tqdm.auto import tqdm

from alignlab.core.roles import required_roles
from alignlab.science.findings import FINDINGS, Finding, Verdict, load_sweep_tables
from alignlab.storage.rundir import atomic_write_bytes, check_writable

CONF = importlib.resources.files("alignlab.conf")


def fail(message: str) -> None:
    print(f"alignlab-report: error: {message}", file=sys.stderr)
    sys.exit(2)


def options(group: str) -> list[str]:
    return sorted(p.name[:-5] for p in (CONF / group).iterdir() if p.name.endswith(".yaml"))


def task_roles(task: str) -> dict[str, str]:
    cfg = OmegaConf.load(str(CONF / "task" / f"{task}.yaml"))
    return dict(OmegaConf.select(cfg, "task.roles", default=None) or {})


def experiment_file(name: str):
    return OmegaConf.load(str(CONF / "experiment" / f"{name}.yaml"))


def job_count(name: str) -> int:
    """Hydra jobs of an experiment: the product of its sweep's value counts."""
    params = OmegaConf.to_container(experiment_file(name).hydra.sweeper.params)
    count = 1
    for value in params.values():
        count *= len(str(value).split(","))
    return count


def plan(task: str, only: list[str] | None) -> tuple[list[Finding], list[tuple[Finding, str]]]:
    """(findings that run on `task`, [(finding, why not)] for the others)."""
    roles = task_roles(task)
    chosen = [FINDINGS[i] for i in (only or FINDINGS)]
    runnable, skipped = [], []
    for finding in chosen:
        wanted = required_roles(OmegaConf.to_container(experiment_file(finding.experiment)), finding.overrides)
        missing = wanted - set(roles)
        if missing:
            skipped.append((finding, f"task={task} has no {', '.join(sorted(missing))} reward role"))
        else:
            runnable.append(finding)
    return runnable, skipped


def command(finding: Finding, task: str, overrides: list[str]) -> list[str]:
    return ["alignlab", "-m", f"experiment={finding.experiment}", f"task={task}", *finding.overrides, *overrides]


def run_finding(finding: Finding, task: str, runs: Path, overrides: list[str], bar: tqdm) -> str | None:
    """Run (or resume) the finding's sweep; None when it finished, else the error line. Counts the jobs that
    were already done in `bar.resumed`."""
    argv = command(finding, task, overrides)
    argv = [sys.executable, "-m", "alignlab", *argv[1:], f"hydra.sweep.dir={runs / finding.experiment}"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("alignlab: ") and ("-> " in line and "summary.json" in line or "already done" in line):
            bar.update(1)
            bar.resumed += "already done" in line
    errors = proc.stderr.read()
    if proc.wait() != 0:
        lines = [x for x in errors.splitlines() if x.strip()]
        return lines[-1] if lines else f"exit status {proc.returncode}"
    return None


def judge(finding: Finding, sweep: Path) -> Verdict:
    summaries, metrics = load_sweep_tables(sweep)
    if summaries.empty:
        return Verdict("inconclusive", {}, "no finished runs.")
    try:
        return finding.verdict(summaries, metrics)
    except (KeyError, IndexError, ValueError) as error:  # a sweep cut down by overrides may lack a setting
        why = f"the sweep lacks what the criterion needs ({type(error).__name__}: {error})."
        return Verdict("inconclusive", {}, why)


def draw(finding: Finding, sweep: Path, figures: Path) -> list[Path]:
    from alignlab.plots.plot import plot_sweep

    figures.mkdir(parents=True, exist_ok=True)
    plot_sweep(sweep, figures)
    return [figures / name for name in finding.figures if (figures / name).exists()]


def number_rows(numbers: dict[str, float]) -> list[tuple[str, str]]:
    """('what', 'mean ± s.d.') rows: 'X mean' and 'X sd' keys merged, other keys as they are."""
    rows = []
    for key, value in numbers.items():
        if key.endswith(" sd"):
            continue
        if key.endswith(" mean"):
            name = key[: -len(" mean")]
            sd = numbers.get(f"{name} sd", math.nan)
            rows.append((name, f"{value:.3f} ± {sd:.3f}" if not math.isnan(value) else "n/a"))
        else:
            rows.append((key, f"{value:.4g}"))
    return rows


def write_report(
    out: Path,
    task: str,
    results: list[dict],
    skipped: list[tuple[Finding, str]],
    seconds: float,
    resumed: int = 0,
    total: int = 0,
):
    md = [f"# Findings report: task={task}", ""]
    again = f" ({resumed} of {total} jobs were already done: resumed)" if resumed else ""
    md.append(
        f"Made by `alignlab-report task={task}` in {seconds:.0f} s{again}. Each verdict is computed from the runs "
        "below by the stated criterion; numbers are mean ± s.d. over seeds. A finding that does not hold is "
        "reported so."
    )
    md += ["", "| finding | verdict | measured |", "|---|---|---|"]
    for r in results:
        md.append(f"| {r['finding'].id} {r['finding'].title} | **{r['verdict'].status}** | {r['verdict'].text} |")
    for finding, why in skipped:
        md.append(f"| {finding.id} {finding.title} | not run | {why} |")
    for r in results:
        f, v = r["finding"], r["verdict"]
        md += ["", f"## {f.id}: {f.title}", "", f"- Paper: {f.paper}", f"- Claim: {f.claim}"]
        md += [f"- Command: `{' '.join(r['command'])}`", f"- Criterion: {f.criterion}"]
        md.append(f"- Verdict: **{v.status}**. {v.text}")
        if r["error"]:
            md.append(f"- The sweep stopped: `{r['error']}`")
        rows = number_rows(v.numbers)
        if rows:
            md += ["", "| measured | mean ± s.d. over seeds |", "|---|---:|"] + [f"| {a} | {b} |" for a, b in rows]
        md += [""] + [f"![{p.name}]({p.relative_to(out).as_posix()})" for p in r["figures"]]
    atomic_write_bytes(out / "REPORT.md", ("\n".join(md) + "\n").encode())

    def esc(text: str) -> str:
        return html.escape(str(text))

    page = [
        "<!doctype html><html><head><meta charset='utf-8'><title>alignlab findings: "
        f"{esc(task)}</title><style>body{{font-family:sans-serif;max-width:1100px;margin:auto}}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}img{max-width:100%}"
        ".holds{color:#070}.does{color:#b00}.inconclusive{color:#a60}</style></head><body>",
        f"<h1>Findings report: task={esc(task)}</h1><p>{esc(md[2])}</p><table><tr><th>finding</th><th>verdict</th>"
        "<th>measured</th></tr>",
    ]
    for r in results:
        css = r["verdict"].status.split()[0]
        page.append(
            f"<tr><td><a href='#{r['finding'].id}'>{esc(r['finding'].id)} {esc(r['finding'].title)}</a></td>"
            f"<td class='{css}'><b>{esc(r['verdict'].status)}</b></td><td>{esc(r['verdict'].text)}</td></tr>"
        )
    for finding, why in skipped:
        page.append(f"<tr><td>{esc(finding.id)} {esc(finding.title)}</td><td>not run</td><td>{esc(why)}</td></tr>")
    page.append("</table>")
    for r in results:
        f, v = r["finding"], r["verdict"]
        page.append(f"<h2 id='{f.id}'>{esc(f.id)}: {esc(f.title)}</h2><ul>")
        page.append(f"<li>Paper: {esc(f.paper)}</li><li>Claim: {esc(f.claim)}</li>")
        page.append(f"<li>Command: <code>{esc(' '.join(r['command']))}</code></li>")
        page.append(f"<li>Criterion: {esc(f.criterion)}</li>")
        css = v.status.split()[0]
        page.append(f"<li>Verdict: <b class='{css}'>{esc(v.status)}</b>. {esc(v.text)}</li></ul>")
        rows = number_rows(v.numbers)
        if rows:
            page.append("<table><tr><th>measured</th><th>mean ± s.d. over seeds</th></tr>")
            page += [f"<tr><td>{esc(a)}</td><td>{esc(b)}</td></tr>" for a, b in rows]
            page.append("</table>")
        page += [f"<p><img src='{p.relative_to(out).as_posix()}' alt='{esc(p.name)}'></p>" for p in r["figures"]]
    page.append("</body></html>")
    atomic_write_bytes(out / "index.html", "\n".join(page).encode())


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="alignlab-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="task=NAME (default bandit) and overrides for every run")
    parser.add_argument("--out", type=Path, default=Path("report"), help="report directory (default: report/)")
    parser.add_argument("--only", default=None, help="comma-separated finding ids, e.g. T1,T5 (default: all)")
    args = parser.parse_args(argv)
    args.task = "bandit"
    rest = []
    for item in args.overrides:
        if item.startswith("task="):
            args.task = item.split("=", 1)[1]
        else:
            rest.append(item)
    args.overrides = rest
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    # Every check before anything is written.
    if args.task not in options("task"):
        fail(f"unknown task '{args.task}'. Fix: choose one of {', '.join(options('task'))}.")
    only = None
    if args.only:
        only = [i.strip() for i in args.only.split(",") if i.strip()]
        unknown = [i for i in only if i not in FINDINGS]
        if unknown:
            fail(f"unknown finding {', '.join(unknown)}. Fix: choose among {', '.join(FINDINGS)}.")
    runnable, skipped = plan(args.task, only)
    if not runnable:
        roles = ", ".join(task_roles(args.task)) or "none"
        fail(
            f"no finding runs on task={args.task} (its reward roles: {roles}). "
            "Fix: use task=bandit or task=synthetic_llm, or add a roles: block to the task's config."
        )
    reason = check_writable(args.out)
    if reason is not None:
        fail(f"cannot write the report directory {args.out} ({reason}). Fix: choose another with --out DIR.")

    out, runs = args.out, args.out / "runs"
    started = time.perf_counter()
    results = []
    total = sum(job_count(f.experiment) for f in runnable)
    with tqdm(total=total, desc=f"findings on {args.task}", unit="job") as bar:
        bar.resumed = 0
        for finding in runnable:
            bar.set_postfix_str(f"{finding.id} {finding.experiment}")
            error = run_finding(finding, args.task, runs, args.overrides, bar)
            sweep = runs / finding.experiment
            verdict = judge(finding, sweep) if sweep.exists() else Verdict("inconclusive", {}, "no runs.")
            figures = draw(finding, sweep, out / "figures" / finding.experiment) if sweep.exists() else []
            results.append(
                {
                    "finding": finding,
                    "verdict": verdict,
                    "figures": figures,
                    "error": error,
                    "command": command(finding, args.task, args.overrides),
                }
            )
        resumed = bar.resumed
    seconds = time.perf_counter() - started
    write_report(out, args.task, results, skipped, seconds, resumed, total)
    for r in results:
        print(f"{r['finding'].id} {r['verdict'].status}: {r['verdict'].text}")
    print(f"alignlab-report: {out / 'REPORT.md'} and {out / 'index.html'} ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
