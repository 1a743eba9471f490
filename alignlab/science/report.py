"""`alignlab-report`: run the findings suite on one tier and write report/REPORT.md and report/index.html.

    alignlab-report                         # task=bandit (tier 1): every finding, about a few minutes
    alignlab-report task=synthetic_llm      # tier 2
    alignlab-report task=bandit --only T1,T5 --out my_report train.iterations=50   # overrides go to every run
    alignlab-report --jobs 1                # one sweep at a time (default: one per CPU for one-thread jobs)

    alignlab-report --verdicts docs/verdicts --into docs/verdicts.md   # the docs' tables from saved verdicts

Per finding (alignlab/science/findings.py): the claim, its paper and the paper's setting (with a citation), the
command that reproduces it, its figures, every scored part as an effect with its paired 95% interval over seeds,
a verdict per algorithm where the finding names several, the combined verdict, and the criterion's history
(alignlab/science/criteria.py). The runs live in OUT/runs/<experiment>/: re-running the command skips every
finished run and seed (resumable). The sweeps run in their own processes, several at once (--jobs), the one
with the most gradient steps first, and each finding is judged in order as its sweep ends: the same runs and
verdicts as one at a time. Only the runs of the experiment are read: a run made with another configuration,
unfinished, or with a damaged summary is named and left out (alignlab/science/sweep.py). The exit status is 1 when
no finding could be judged on any run.
OUT/verdicts.json keeps every check for the docs.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import importlib.resources
import json
import math
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from alignlab.core.roles import required_roles
from alignlab.science.criteria import CRITERIA, history_lines
from alignlab.science.findings import FINDINGS, Finding, Verdict
from alignlab.science.sweep import flatten, read_sweep
from alignlab.stats import combine, decide
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


class Progress:
    """The report's progress bar, shared by the sweeps that run at once: jobs done, jobs found already done (a
    resumed report), and the findings running now."""

    def __init__(self, bar: tqdm):
        self.bar, self.resumed, self.running = bar, 0, []
        self.lock = threading.Lock()

    def job(self, resumed: bool) -> None:
        with self.lock:
            self.bar.update(1)
            self.resumed += resumed

    def started(self, finding: Finding, running: bool = True) -> None:
        with self.lock:
            name = f"{finding.id} {finding.experiment}"
            self.running = [*self.running, name] if running else [r for r in self.running if r != name]
            self.bar.set_postfix_str(", ".join(self.running))


def run_finding(finding: Finding, task: str, runs: Path, overrides: list[str], progress: Progress) -> str | None:
    """Run (or resume) the finding's sweep; None when it finished, else the error line."""
    argv = command(finding, task, overrides)
    argv = [sys.executable, "-m", "alignlab", *argv[1:], f"hydra.sweep.dir={runs / finding.experiment}"]
    progress.started(finding)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("alignlab: ") and ("-> " in line and "summary.json" in line or "already done" in line):
            progress.job("already done" in line)
    errors = proc.stderr.read()
    progress.started(finding, running=False)
    if proc.wait() != 0:
        lines = [x for x in errors.splitlines() if x.strip()]
        return lines[-1] if lines else f"exit status {proc.returncode}"
    return None


def default_jobs(task: str, overrides: list[str]) -> int:
    """Sweeps run at once by default: one per CPU when each job runs on one thread (`threads: 1`, as the bandits
    and the synthetic LM set it), else one (a job on all cores, or a large model, wants the machine)."""
    threads = OmegaConf.load(str(CONF / "task" / f"{task}.yaml")).get("threads")
    for override in overrides:
        if override.startswith("threads="):
            threads = override.split("=", 1)[1]
    return max(1, os.cpu_count() or 1) if str(threads) == "1" else 1


def sweep_steps(finding: Finding, task: str, overrides: list[str]) -> int:
    """Gradient steps of the finding's sweep: over its jobs, seeds x iterations x updates a round (T x B/M). The
    steps are most of a sweep's time on one core, so the report starts the largest sweep first: a long sweep
    started last would run alone at the end while the other cores idle. A swept config group (algo=, sampling=)
    counts as the experiment's own setting; swept keys (sampling.updates_per_batch=...) take each value."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    import alignlab.runs.schema  # noqa: F401  (registers the structured configs the defaults name)

    GlobalHydra.instance().clear()
    with initialize_config_module("alignlab.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={finding.experiment}", f"task={task}", *finding.overrides,
                                           *overrides])  # fmt: skip
    GlobalHydra.instance().clear()
    params = OmegaConf.to_container(experiment_file(finding.experiment).hydra.sweeper.params)
    keys = [k for k in params if "." in k]  # a config group's options (algo, sampling) are whole files
    jobs = [{}]
    for key in keys:
        jobs = [job | {key: yaml.safe_load(v)} for job in jobs for v in str(params[key]).split(",")]
    jobs_per_setting = job_count(finding.experiment) // max(1, len(jobs))
    steps = 0
    counted = OmegaConf.to_container(cfg)
    counted = {k: counted[k] for k in ("num_seeds", "findings", "train", "sampling")}  # what the count reads
    for job in jobs:
        run = OmegaConf.create(counted)
        for key, value in job.items():
            OmegaConf.update(run, key, value, force_add=True)
        sampling = run.sampling
        per_pass = 1 if sampling.minibatch_prompts is None else sampling.prompts_per_round // sampling.minibatch_prompts
        steps += run.num_seeds * run.train.iterations * sampling.updates_per_batch * per_pass
    return steps * jobs_per_setting


def sweep_order(runnable: list[Finding], task: str, overrides: list[str]) -> list[Finding]:
    """The first finding of each experiment (a sweep two findings share runs once), the most steps first."""
    first: dict[str, Finding] = {}
    for finding in runnable:
        first.setdefault(finding.experiment, finding)
    steps = {e: sweep_steps(f, task, overrides) for e, f in first.items()}
    return sorted(first.values(), key=lambda f: -steps[f.experiment])


def expected_config(finding: Finding, task: str, overrides: list[str]):
    """run overrides -> the flattened configuration a run of this finding's sweep must have: the experiment's,
    composed with the run's own values of the swept keys (seed aside)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    import alignlab.runs.schema  # noqa: F401  (registers the structured configs the defaults name)

    swept = set(OmegaConf.to_container(experiment_file(finding.experiment).hydra.sweeper.params))
    fixed = [f"experiment={finding.experiment}", f"task={task}", *finding.overrides, *overrides]
    fixed_keys = {o.split("=", 1)[0] for o in fixed}
    cache: dict[tuple, dict[str, str]] = {}

    def expected(run_overrides: list[str]) -> dict[str, str]:
        values = tuple(o for o in run_overrides if o.split("=", 1)[0] in swept - fixed_keys - {"seed"})
        if values not in cache:
            GlobalHydra.instance().clear()
            with initialize_config_module("alignlab.conf", version_base="1.3"):
                cfg = compose("config", overrides=[*values, *fixed])
            GlobalHydra.instance().clear()
            cache[values] = flatten(OmegaConf.to_container(cfg, resolve=False))
        return cache[values]

    return expected


def not_run(finding: Finding, summaries) -> str:
    """A sentence naming the values of the experiment's swept keys that no judged run has (a sweep cut down on
    the command line, e.g. `algo=dpo` to fit tier 3 in a CPU budget), so that a verdict says what it rests on;
    '' when every value ran. Keys the finding itself fixes (its overrides) are not a cut."""
    params = OmegaConf.to_container(experiment_file(finding.experiment).hydra.sweeper.params)
    fixed = {o.split("=", 1)[0] for o in finding.overrides}
    cuts = []
    for key, values in params.items():
        if key == "seed" or key in fixed or key not in summaries:
            continue
        wanted = [v.strip() for v in str(values).split(",")]
        have = set(summaries[key].astype(str))
        missing = [v for v in wanted if v not in have]
        if missing:
            ran = ", ".join(v for v in wanted if v in have)
            cuts.append(f"{key}={ran} only ({', '.join(missing)} not run)")
    if not cuts:
        return ""
    return f"Judged on the runs made: {'; '.join(cuts)}; a sweep cut down, e.g. for a budget."


def judge(finding: Finding, sweep: Path, expected=None) -> tuple[Verdict, list[str]]:
    """The verdict over the sweep's accepted runs (saying which swept values were not run), and one line per
    refused run."""
    runs = read_sweep(sweep, expected)
    if runs.summaries.empty:
        return Verdict("inconclusive", {}, "no finished, whole run of this experiment."), runs.refused
    try:
        verdict = finding.verdict(runs.summaries, runs.metrics)
    except (KeyError, IndexError, ValueError) as error:  # a sweep cut down by overrides may lack a setting
        why = f"the sweep lacks what the criterion needs ({type(error).__name__}: {error})."
        return Verdict("inconclusive", {}, why), runs.refused
    cut = not_run(finding, runs.summaries)
    return (dataclasses.replace(verdict, text=f"{verdict.text} {cut}") if cut else verdict), runs.refused


def draw(finding: Finding, sweep: Path, figures: Path) -> list[Path]:
    from alignlab.plots.plot import plot_sweep

    figures.mkdir(parents=True, exist_ok=True)
    plot_sweep(sweep, figures)
    return [figures / name for name in finding.figures if (figures / name).exists()]


# ---- verdict records: what the docs' tables are generated from ---------------------------------------------
def record(finding: Finding, verdict: Verdict, task: str, overrides: list[str]) -> dict:
    """A finding's verdict on one task as plain data (OUT/verdicts.json; docs/verdicts/<task>.json)."""
    return {
        "finding": finding.id,
        "task": task,
        "overrides": overrides,
        "extension_of": finding.extension_of,
        "status": verdict.status,
        "checks": [
            {k: getattr(c, k) for k in ("part", "name", "effect", "low", "high", "seeds", "more_seeds", "undecidable")}
            for c in verdict.checks
        ],
    }


def redecide(rec: dict) -> tuple[str, list[tuple[dict, str]]]:
    """A record's verdict and each check's status, decided again with today's criteria (criteria.py):
    a committed table whose bars changed no longer matches what this prints."""
    criterion = CRITERIA[rec["finding"]]
    decided = []
    for c in rec["checks"]:
        bar = criterion.parts.get(c["part"])
        status = (
            "inconclusive"
            if bar is None or c.get("undecidable")
            else decide(c["effect"], c["low"], c["high"], bar.direction, bar.size)
        )
        decided.append((c, status))
    if not decided:
        return rec["status"], decided
    if any(c["part"] == "needs" and status != "holds" for c, status in decided):
        return "inconclusive", decided  # no gap for the finding to explain (criteria.py, part 'needs')
    return combine([s for _, s in decided], criterion.combine), decided


def seed_count(count: int) -> str:
    return f"{count} seed" + "s" * (count != 1)


def budget_note(task: str, seeds: set[int]) -> str | None:
    """The task's `findings.seeds_note` (conf/task/<task>.yaml: why its findings run fewer seeds than tier 1's,
    a time budget) when a verdict's parts ran the task's `findings.seeds`; else None."""
    path = CONF / "task" / f"{task}.yaml"
    if not path.is_file():
        return None
    cfg = OmegaConf.load(str(path))
    note = OmegaConf.select(cfg, "findings.seeds_note", default=None)
    return note if note and seeds == {OmegaConf.select(cfg, "findings.seeds", default=None)} else None


def _number(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


TIERS = ("bandit", "synthetic_llm", "full_scale")  # the tasks' names begin with their tier's


def tier_order(task: str) -> tuple[int, str]:
    """Tier 1, 2, 3 left to right in the tables (a task of no known tier last), then by name."""
    tier = next((i for i, prefix in enumerate(TIERS) if task.startswith(prefix)), len(TIERS))
    return tier, task


def verdicts_markdown(records: list[dict]) -> str:
    """The verdict tables, finding x tier, then every check with its interval: docs/verdicts.md's block."""
    tasks = sorted(dict.fromkeys(r["task"] for r in records), key=tier_order)
    findings = [f for f in FINDINGS if any(r["finding"] == f for r in records)]
    by = {(r["finding"], r["task"]): r for r in records}
    lines = ["| finding | " + " | ".join(f"task={t}" for t in tasks) + " |", "|---|" + "---|" * len(tasks)]
    budgets: dict[str, str] = {}
    for fid in findings:
        mark = " (extension)" if FINDINGS[fid].extension_of else ""
        cells = []
        for t in tasks:
            rec = by.get((fid, t))
            seeds = {c["seeds"] for c in rec["checks"]} if rec else set()
            note = f", {min(seeds)} seeds" if seeds else ""
            budget = budget_note(t, seeds) if seeds else None
            if budget:
                budgets[t] = budget
                note += " (budget)"
            cells.append(f"**{redecide(rec)[0]}**{note}" if rec else "not run")
        lines.append(f"| {fid}{mark} | " + " | ".join(cells) + " |")
    if budgets:
        lines += ["", "(budget): fewer seeds than tier 1's 10, set by the report's time budget."]
        lines += [f"- task={t}: {budgets[t]}." for t in tasks if t in budgets]
    for t in tasks:
        lines += ["", f"### task={t}", ""]
        extra = [r["overrides"] for r in records if r["task"] == t and r["overrides"]]
        if extra:
            lines += [f"Overrides given to every run: `{' '.join(extra[0])}`.", ""]
        lines += ["| finding | part | effect [95% interval] | seeds | bar | status |", "|---|---|---|---:|---|---|"]
        for fid in findings:
            rec = by.get((fid, t))
            if rec is None:
                continue
            for c, status in redecide(rec)[1]:
                bar = CRITERIA[fid].parts.get(c["part"])
                more = ""
                if status == "inconclusive" and c.get("more_seeds"):
                    more = f" (~{seed_count(c['more_seeds'])} more)"
                interval = f"{_number(c['effect'])} [{_number(c['low'])}, {_number(c['high'])}]"
                bar_text = f"{bar.direction} {bar.size:g}" if bar else "?"
                lines.append(f"| {fid} | {c['name']} | {interval} | {c['seeds']} | {bar_text} | {status}{more} |")
    lines += ["", "### Criteria and their history", ""]
    for fid in findings:
        lines.append(f"- **{fid}**: {CRITERIA[fid].words()}")
        lines += [f"  - {h}" for h in history_lines(fid)]
    return "\n".join(lines) + "\n"


VERDICTS_BEGIN = "<!-- verdicts: generated by `alignlab-report --verdicts docs/verdicts`; do not edit -->"
VERDICTS_END = "<!-- verdicts: end -->"


def verdicts_block(directory: Path) -> str:
    records = []
    for path in sorted(Path(directory).glob("*.json")):
        records += json.loads(path.read_text())
    return f"{VERDICTS_BEGIN}\n{verdicts_markdown(records)}{VERDICTS_END}\n"


def check_rows(verdict: Verdict) -> list[tuple[str, ...]]:
    rows = []
    for c in verdict.checks:
        more = ""
        if c.status == "inconclusive" and c.more_seeds:
            more = f"; ~{seed_count(c.more_seeds)} more would decide it"
        rows.append((c.name, c.interval(), str(c.seeds), f"{c.direction} {c.size:g}", c.status + more))
    return rows


def number_rows(numbers: dict[str, float]) -> list[tuple[str, str]]:
    return [(k, "n/a" if isinstance(v, float) and math.isnan(v) else f"{v:.4g}") for k, v in numbers.items()]


def write_report(
    out: Path,
    task: str,
    results: list[dict],
    skipped: list[tuple[Finding, str]],
    seconds: float,
    resumed: int = 0,
    total: int = 0,
    judge_only: bool = False,
):
    md = [f"# Findings report: task={task}", ""]
    again = f" ({resumed} of {total} jobs were already done: resumed)" if resumed else ""
    if judge_only:
        again = " with --judge-only (no run launched: a sweep may be incomplete; each part says its seeds)"
    md.append(
        f"Made by `alignlab-report task={task}` in {seconds:.0f} s{again}. Each verdict is computed from the runs "
        "below by the stated criterion: every part is an effect over seeds with its paired bootstrap 95% interval "
        "(seeded), against a bar fixed in alignlab/science/criteria.py. A finding that does not hold is reported so."
    )
    budgets = {r["finding"].id: budget_note(task, {c.seeds for c in r["verdict"].checks}) for r in results}
    md += ["", "| finding | verdict | measured |", "|---|---|---|"]
    for r in results:
        f = r["finding"]
        mark = f" (extension of {f.extension_of})" if f.extension_of else ""
        seeds = f" ({budgets[f.id].split(':')[0]}: budget)" if budgets[f.id] else ""
        md.append(f"| {f.id} {f.title}{mark} | **{r['verdict'].status}**{seeds} | {r['verdict'].text} |")
    for finding, why in skipped:
        md.append(f"| {finding.id} {finding.title} | not run | {why} |")
    for r in results:
        f, v = r["finding"], r["verdict"]
        md += ["", f"## {f.id}: {f.title}", "", f"- Paper: {f.paper}", f"- Claim: {f.claim}"]
        if f.extension_of:
            md.append(f"- **Extension** of {f.extension_of}: a question the paper did not ask.")
        md += [f"- Setting: {f.setting}", f"- Command: `{' '.join(r['command'])}`", f"- Criterion: {f.criterion}"]
        md.append("- Criterion history: " + " ".join(f"({i}) {h}" for i, h in enumerate(history_lines(f.id), 1)))
        md.append(f"- Verdict: **{v.status}**. {v.text}")
        if budgets[f.id]:
            md.append(f"- Seeds: {budgets[f.id]}.")
        if r["error"]:
            md.append(f"- The sweep stopped: `{r['error']}`")
        if r["refused"]:
            md.append(f"- {len(r['refused'])} run(s) left out, not averaged:")
            md += [f"  - {line}" for line in r["refused"]]
        rows = check_rows(v)
        if rows:
            md += ["", "| part | effect [95% interval] | seeds | bar | status |", "|---|---:|---:|---|---|"]
            md += ["| " + " | ".join(row) + " |" for row in rows]
        rows = number_rows(v.numbers)
        if rows:
            md += ["", "| also measured (means over seeds, not scored) | value |", "|---|---:|"]
            md += [f"| {a} | {b} |" for a, b in rows]
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
        page.append(f"<li>Paper: {esc(f.paper)}</li><li>Claim: {esc(f.claim)}</li><li>Setting: {esc(f.setting)}</li>")
        page.append(f"<li>Command: <code>{esc(' '.join(r['command']))}</code></li>")
        page.append(f"<li>Criterion: {esc(f.criterion)}</li>")
        page.append(
            "<li>Criterion history:<ul>" + "".join(f"<li>{esc(h)}</li>" for h in history_lines(f.id)) + "</ul></li>"
        )
        css = v.status.split()[0]
        page.append(f"<li>Verdict: <b class='{css}'>{esc(v.status)}</b>. {esc(v.text)}</li>")
        if budgets[f.id]:
            page.append(f"<li>Seeds: {esc(budgets[f.id])}.</li>")
        page += [f"<li>left out: {esc(line)}</li>" for line in r["refused"]]
        page.append("</ul>")
        rows = check_rows(v)
        if rows:
            page.append(
                "<table><tr><th>part</th><th>effect [95% interval]</th><th>seeds</th><th>bar</th><th>status</th></tr>"
            )
            page += ["<tr>" + "".join(f"<td>{esc(x)}</td>" for x in row) + "</tr>" for row in rows]
            page.append("</table>")
        page += [f"<p><img src='{p.relative_to(out).as_posix()}' alt='{esc(p.name)}'></p>" for p in r["figures"]]
    page.append("</body></html>")
    atomic_write_bytes(out / "index.html", "\n".join(page).encode())
    records = [record(r["finding"], r["verdict"], task, r["overrides"]) for r in results if r["judged"]]
    atomic_write_bytes(out / "verdicts.json", (json.dumps(records, indent=1) + "\n").encode())


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="alignlab-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="task=NAME (default bandit) and overrides for every run")
    parser.add_argument("--out", type=Path, default=Path("report"), help="report directory (default: report/)")
    parser.add_argument("--only", default=None, help="comma-separated finding ids, e.g. T1,T5 (default: all)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="sweeps run at once (default: one per CPU when the task's jobs run on one thread, else 1)",
    )
    parser.add_argument(
        "--judge-only",
        action="store_true",
        help="launch no run: judge the runs already in OUT/runs/ (a sweep still running elsewhere, or cut short)",
    )
    parser.add_argument(
        "--verdicts",
        type=Path,
        default=None,
        metavar="DIR",
        help="print the verdict tables generated from DIR/*.json (saved verdicts.json files) and exit",
    )
    parser.add_argument(
        "--into",
        type=Path,
        default=None,
        metavar="FILE",
        help="with --verdicts: replace the generated block in FILE (e.g. docs/verdicts.md) instead of printing it",
    )
    args = parser.parse_intermixed_args(argv)  # overrides before, between or after the options
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
    if args.verdicts is not None:
        if not sorted(args.verdicts.glob("*.json")):
            fail(f"no saved verdicts (*.json) in {args.verdicts}. Fix: copy a report's verdicts.json there.")
        block = verdicts_block(args.verdicts)
        if args.into is None:
            print(block, end="")
            return
        text = args.into.read_text() if args.into.exists() else ""
        if VERDICTS_BEGIN not in text or VERDICTS_END not in text:
            fail(
                f"{args.into} has no generated block. Fix: put the lines {VERDICTS_BEGIN!r} and {VERDICTS_END!r} in it."
            )
        head, rest = text.split(VERDICTS_BEGIN, 1)
        atomic_write_bytes(args.into, (head + block + rest.split(VERDICTS_END + "\n", 1)[-1]).encode())
        print(f"alignlab-report: {args.into}")
        return
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
    if args.jobs is not None and args.jobs < 1:
        fail(f"--jobs {args.jobs}: at least one sweep must run at a time. Fix: give --jobs 1 or more, or leave it out.")
    reason = check_writable(args.out)
    if reason is not None:
        fail(f"cannot write the report directory {args.out} ({reason}). Fix: choose another with --out DIR.")

    out, runs = args.out, args.out / "runs"
    started = time.perf_counter()
    results = []
    experiments = list(dict.fromkeys(f.experiment for f in runnable))  # a sweep two findings share runs once
    total = sum(job_count(e) for e in experiments)
    jobs = args.jobs or default_jobs(args.task, args.overrides)
    # The sweeps run in their own processes, up to `jobs` at once (each experiment's jobs in its own order: a
    # data ablation reads a sibling's run); each finding is judged and drawn here, in order, once its sweep ends.
    pool = ThreadPoolExecutor(jobs)
    try:
        with tqdm(total=total, desc=f"findings on {args.task}", unit="job") as bar:
            progress, sweeps = Progress(bar), {}
            for finding in [] if args.judge_only else sweep_order(runnable, args.task, args.overrides):
                sweeps[finding.experiment] = pool.submit(
                    run_finding, finding, args.task, runs, args.overrides, progress
                )
            for finding in runnable:
                error = sweeps[finding.experiment].result() if sweeps else None
                sweep = runs / finding.experiment
                expected = expected_config(finding, args.task, args.overrides)
                verdict, refused = (
                    judge(finding, sweep, expected) if sweep.exists() else (Verdict("inconclusive", {}, "no runs."), [])
                )
                figures = draw(finding, sweep, out / "figures" / finding.experiment) if verdict.checks else []
                results.append(
                    {
                        "finding": finding,
                        "verdict": verdict,
                        "judged": bool(verdict.checks),
                        "figures": figures,
                        "error": error,
                        "refused": refused,
                        "overrides": args.overrides,
                        "command": command(finding, args.task, args.overrides),
                    }
                )
            resumed = progress.resumed
    finally:  # an interrupted report launches no sweep that had not started
        pool.shutdown(cancel_futures=True)
    seconds = time.perf_counter() - started
    write_report(out, args.task, results, skipped, seconds, resumed, total, args.judge_only)
    for r in results:
        print(f"{r['finding'].id} {r['verdict'].status}: {r['verdict'].text}")
        for line in r["refused"]:
            print(f"alignlab-report: left out {line}", file=sys.stderr)
    print(f"alignlab-report: {out / 'REPORT.md'} and {out / 'index.html'} ({seconds:.0f} s)")
    if not any(r["judged"] for r in results):
        print(
            "alignlab-report: error: no finding could be judged on any run. Fix: see the runs named above, or "
            "re-run into an empty --out.",
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
