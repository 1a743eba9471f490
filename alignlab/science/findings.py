"""The papers' findings as a registry: each one an experiment, a criterion, and a verdict computed from data.

A finding names its paper, the claim in one sentence, the experiment (a file in conf/experiment/) that
tests it on any task with the roles it needs, and `verdict(summaries, metrics) -> Verdict`. `alignlab-report`
runs the experiments and writes the verdicts (alignlab/science/report.py). New findings join with `register(...)`.

The two tables a verdict reads (`load_sweep_tables`):
- summaries: one row per run and seed: a column per swept override key as written (`sampling`, `algo`,
  `task.reward`, `sampling.updates_per_batch`, ...), `seed`, and every key of that seed's summary.json;
- metrics: the same identifying columns, `iteration`, and every column of the run's metrics.csv.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from alignlab.storage.rundir import METRICS, SUMMARY

STATUSES = ("holds", "does not hold", "inconclusive")


@dataclass(frozen=True)
class Verdict:
    status: str  # holds | does not hold | inconclusive
    numbers: dict[str, float]  # measured numbers; "X mean" / "X sd" pairs are over seeds
    text: str  # one or two sentences: what was measured against the criterion

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"a verdict is one of {STATUSES}, not {self.status!r}")


@dataclass(frozen=True)
class Finding:
    id: str  # T1, T2, ...
    title: str
    paper: str  # authors, year, arXiv id, section / figure
    claim: str  # one sentence
    experiment: str  # a file in conf/experiment/
    criterion: str  # how the verdict is computed, in words
    verdict: Callable[[pd.DataFrame, pd.DataFrame], Verdict]
    figures: tuple[str, ...] = ("reward_vs_iteration.png",)  # alignlab-plot figures the report shows
    overrides: tuple[str, ...] = field(default_factory=tuple)  # extra overrides the report passes


FINDINGS: dict[str, Finding] = {}


def register(finding: Finding) -> Finding:
    if finding.id in FINDINGS:
        raise ValueError(f"finding {finding.id} is registered twice")
    FINDINGS[finding.id] = finding
    return finding


# ---- reading a sweep ---------------------------------------------------------------------------------------
IGNORED_OVERRIDES = ("experiment", "num_seeds", "seed", "force", "plot", "train.progress", "hydra.", "task")


def _overrides(run_dir: Path) -> dict[str, str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    items = (yaml.safe_load(path.read_text()) or []) if path.exists() else []
    pairs = dict(o.split("=", 1) for o in items if "=" in o)
    return {k: v for k, v in pairs.items() if not (k in IGNORED_OVERRIDES or k.startswith("hydra."))}


def load_sweep_tables(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summaries, metrics) of every finished run below `root` (one row per run and seed in summaries)."""
    summary_rows, metric_frames = [], []
    for metrics_path in sorted(Path(root).rglob(METRICS)):
        run = metrics_path.parent
        summary_path = run / SUMMARY
        if not summary_path.exists():
            continue  # unfinished
        summary = json.loads(summary_path.read_text())
        ident = _overrides(run)
        ident["seed"] = int(summary.get("seed", 0))
        summary_rows.append({**summary, **ident, "run": str(run)})
        frame = pd.read_csv(metrics_path)
        for key, value in ident.items():
            frame[key] = value
        frame["run"] = str(run)
        metric_frames.append(frame)
    summaries = pd.DataFrame(summary_rows)
    metrics = pd.concat(metric_frames, ignore_index=True) if metric_frames else pd.DataFrame()
    return summaries, metrics


# ---- helpers for verdicts ----------------------------------------------------------------------------------
def _stats(values) -> tuple[float, float]:
    series = pd.Series(values, dtype=float).dropna()
    if series.empty:
        return math.nan, math.nan
    return float(series.mean()), float(series.std(ddof=1)) if len(series) > 1 else 0.0


def _put(numbers: dict, name: str, values) -> float:
    mean, sd = _stats(values)
    numbers[f"{name} mean"], numbers[f"{name} sd"] = mean, sd
    return mean


def select_runs(summaries: pd.DataFrame, **where) -> pd.DataFrame:
    """The rows of the runs matching `where` (override values compared as strings, as Hydra wrote them)."""
    rows = summaries
    for key, value in where.items():
        rows = rows[rows[key].astype(str) == str(value)]
    return rows


def _final(summaries: pd.DataFrame, **where) -> pd.Series:
    """Final reward per seed of the runs matching `where`."""
    return select_runs(summaries, **where).set_index("seed")["reward"].sort_index()


def _three_way(checks: list[bool], text: str, numbers: dict) -> Verdict:
    status = "holds" if all(checks) else "does not hold" if not any(checks) else "inconclusive"
    return Verdict(status, numbers, text)


# ---- T1: on-policy sampling on hard and easy ---------------------------------------------------------------
T1_HARD_GAP, T1_EASY_GAP = 0.2, 0.1


def verdict_on_policy(summaries: pd.DataFrame, metrics: pd.DataFrame) -> Verdict:
    numbers, checks, notes = {}, [], []
    for algo in sorted(summaries["algo"].unique()):
        gaps = {}
        for reward in ("hard", "easy"):
            gap = _final(summaries, algo=algo, sampling="online", **{"task.reward": reward}) - _final(
                summaries, algo=algo, sampling="offline", **{"task.reward": reward}
            )
            gaps[reward] = _put(numbers, f"{algo}: online - offline on {reward}", gap)
        ok = gaps["hard"] >= T1_HARD_GAP and gaps["easy"] <= T1_EASY_GAP
        checks.append(ok)
        notes.append(f"{algo} {gaps['hard']:+.2f} / {gaps['easy']:+.2f}{'' if ok else ' (fails)'}")
    text = "online - offline final reward on hard / easy: " + "; ".join(notes) + "."
    return _three_way(checks, text, numbers)


register(
    Finding(
        id="T1",
        title="On-policy sampling matters where the optimum is unlikely under the reference",
        paper="Tajwar et al. 2024, arXiv:2404.14367, Sec. 5 (on-policy sampling, R1 vs R2 bandits)",
        claim="Online methods beat their offline versions by far on the hard reward and by little on the easy one.",
        experiment="online_vs_offline",
        criterion=(
            f"for every algorithm, online minus offline final reward (paired by seed) is at least {T1_HARD_GAP} on "
            f"hard and at most {T1_EASY_GAP} on easy: holds if every algorithm passes, does not hold if none does, "
            "inconclusive otherwise"
        ),
        verdict=verdict_on_policy,
        figures=("reward_vs_iteration.png", "reward_vs_kl.png"),
    )
)


# ---- T2: negative gradients --------------------------------------------------------------------------------
T2_LEVEL, T2_RATIO = 0.9, 0.9
T2_PAIRS = (("best_of_n_neg_worst", "best_of_n"), ("best_of_n_neg_worse", "best_of_n"), ("dpo", "sft"))


def iterations_to_level(metrics: pd.DataFrame, level: float = T2_LEVEL) -> pd.Series:
    """Per run: the first iteration whose evaluated reward covers `level` of the way from the reference's
    reward (iteration 0) to 1, the reward's maximum; the run's last iteration + 1 when it never does."""
    out = {}
    for run, frame in metrics.dropna(subset=["eval/reward"]).groupby("run"):
        frame = frame.sort_values("iteration")
        start = float(frame["eval/reward"].iloc[0])
        target = start + level * (1.0 - start)
        hit = frame[frame["eval/reward"] >= target]
        out[run] = float(hit["iteration"].iloc[0]) if len(hit) else float(frame["iteration"].max() + 1)
    return pd.Series(out, dtype=float)


def verdict_negative_gradient(summaries: pd.DataFrame, metrics: pd.DataFrame) -> Verdict:
    numbers, checks, notes = {}, [], []
    online = metrics[metrics["sampling"].astype(str) == "online"]
    hits = iterations_to_level(online)
    runs = online.groupby("run")[["algo", "seed"]].first()
    runs["iterations"] = hits
    means = {}
    for algo in sorted(runs["algo"].unique()):
        name = f"{algo}: iterations to {T2_LEVEL:.0%} (online)"
        means[algo] = _put(numbers, name, runs[runs.algo == algo].iterations)
    for algo in sorted(runs["algo"].unique()):
        _put(numbers, f"{algo}: final reward (online)", _final(summaries, algo=algo, sampling="online"))
    for negative, positive in T2_PAIRS:
        if negative in means and positive in means:
            ok = means[negative] <= T2_RATIO * means[positive]
            checks.append(ok)
            notes.append(f"{negative} {means[negative]:.0f} vs {positive} {means[positive]:.0f}")
    offline = metrics[(metrics["sampling"].astype(str) == "offline") & (metrics["algo"] == "dpo")]
    if {"logps/chosen", "logps/rejected"} <= set(offline.columns) and not offline.empty:
        for column in ("logps/chosen", "logps/rejected", "logps/margin"):
            per_run = offline.dropna(subset=[column]).sort_values("iteration").groupby("run")[column]
            _put(numbers, f"offline dpo: change of {column}", per_run.last() - per_run.first())
        notes.append(
            "offline DPO log-probs: chosen {:+.2f}, rejected {:+.2f}, margin {:+.2f}".format(
                numbers["offline dpo: change of logps/chosen mean"],
                numbers["offline dpo: change of logps/rejected mean"],
                numbers["offline dpo: change of logps/margin mean"],
            )
        )
    text = "mean iterations to the level: " + "; ".join(notes) + "."
    return _three_way(checks, text, numbers)


register(
    Finding(
        id="T2",
        title="Negative gradients speed learning",
        paper="Tajwar et al. 2024, arXiv:2404.14367, Sec. 5 (negative gradient; Best-of-N and Pref-FT vs DPO/IPO)",
        claim=(
            "An objective that also pushes down worse samples reaches a reward level in fewer iterations than "
            "maximum likelihood on the preferred samples alone, and can lower chosen and rejected log-probs "
            "while the margin grows."
        ),
        experiment="negative_gradient",
        criterion=(
            f"online, iterations to cover {T2_LEVEL:.0%} of the way from the reference's reward to 1 (mean over "
            f"seeds; a run that never does counts its length + 1): each negative-gradient objective takes at most "
            f"{T2_RATIO}x its positive-only counterpart (Best-of-N + worst, Best-of-N + worse vs Best-of-N; DPO vs "
            "SFT): holds if all three pass, does not hold if none does; the offline DPO log-prob changes are "
            "reported, not scored"
        ),
        verdict=verdict_negative_gradient,
        figures=("reward_vs_iteration.png", "logps.png"),
    )
)


# ---- T3: sample reuse --------------------------------------------------------------------------------------
T3_HOLD, T3_DROP = 0.05, 0.1
T3_KEY = "sampling.updates_per_batch"


def verdict_sample_reuse(summaries: pd.DataFrame, metrics: pd.DataFrame) -> Verdict:
    """Each objective's largest T against its best T: at a fixed number of iterations T also multiplies the
    gradient steps, so T = 1 (the fewest steps) is not the baseline; the question is whether more reuse past the
    best T costs reward."""
    numbers = {}
    reuse = sorted(summaries[T3_KEY].astype(int).unique())
    high = reuse[-1]
    final = {}
    for algo in sorted(summaries["algo"].unique()):
        for t in reuse:
            final[algo, t] = _put(numbers, f"{algo} T={t}: final reward", _final(summaries, algo=algo, **{T3_KEY: t}))
    checks, notes = [], []
    for algo in ("ppo", "best_of_n", "dpo"):
        if (algo, high) not in final:
            continue
        best_t = max(reuse, key=lambda t: final[algo, t])
        best, last = final[algo, best_t], final[algo, high]
        if algo == "ppo":
            checks.append(last >= best - T3_HOLD)
        elif algo == "best_of_n":
            checks.append(last <= best - T3_DROP)
        notes.append(f"{algo} best {best:.3f} at T={best_t}, {last:.3f} at T={high}")
    return _three_way(checks, "final reward: " + "; ".join(notes) + ".", numbers)


register(
    Finding(
        id="T3",
        title="Sample reuse: a clipped ratio tolerates it, filtered likelihood overfits",
        paper="Tajwar et al. 2024, arXiv:2404.14367, Sec. 5 (sample reuse, T gradient steps per on-policy batch)",
        claim=(
            "Reusing each on-policy batch for T steps helps up to a point; PPO's clipped ratio keeps its reward at "
            "large T, while Best-of-N overfits the reused batch and loses reward as T grows past its best."
        ),
        experiment="sample_reuse",
        criterion=(
            f"final reward (mean over seeds) on hard, at the task's fixed number of iterations: PPO at the largest T "
            f"within {T3_HOLD} of PPO at its best T, and Best-of-N at the largest T at least {T3_DROP} below "
            "Best-of-N at its best T (the best T, not T=1, is the baseline: at a fixed number of iterations T also "
            "multiplies the gradient steps): holds if both, does not hold if neither, inconclusive otherwise"
        ),
        verdict=verdict_sample_reuse,
    )
)


# ---- T4: batch size at a fixed sample budget ---------------------------------------------------------------
T4_GAP = 0.05
T4_KEY = "sampling.prompts_per_round"


def verdict_batch_size(summaries: pd.DataFrame, metrics: pd.DataFrame) -> Verdict:
    numbers, checks, notes = {}, [], []
    sizes = sorted(metrics[T4_KEY].astype(int).unique())
    small, large = sizes[0], sizes[-1]
    evaluated = metrics.dropna(subset=["eval/reward"])
    for algo in sorted(metrics["algo"].unique()):
        area = {}
        for b in sizes:
            rows = evaluated[(evaluated["algo"] == algo) & (evaluated[T4_KEY].astype(int) == b)]
            per_run = rows.groupby("run")["eval/reward"].mean()  # evaluations are evenly spaced in prompts seen
            area[b] = _put(numbers, f"{algo} B={b}: mean reward over the budget", per_run)
            _put(numbers, f"{algo} B={b}: final reward", _final(summaries, algo=algo, **{T4_KEY: b}))
        ok = area[small] - area[large] >= T4_GAP
        checks.append(ok)
        notes.append(f"{algo} {area[small]:.3f} at B={small}, {area[large]:.3f} at B={large}")
    text = "mean reward over the sample budget: " + "; ".join(notes) + "."
    return _three_way(checks, text, numbers)


register(
    Finding(
        id="T4",
        title="At a fixed sample budget, smaller rounds (fresher data) learn faster",
        paper="Tajwar et al. 2024, arXiv:2404.14367, Sec. 5 (on-policyness: samples per round at a fixed minibatch)",
        claim=(
            "At a fixed minibatch size and sample budget, a smaller round B (more on-policy data, same number of "
            "samples and gradient steps) reaches high reward with fewer samples."
        ),
        experiment="batch_size",
        criterion=(
            "the mean evaluated reward over the whole budget (the area under reward against prompts seen, mean "
            f"over seeds) at the smallest B exceeds that at the largest B by at least {T4_GAP}, for every algorithm: "
            "holds if all pass, does not hold if none does"
        ),
        verdict=verdict_batch_size,
    )
)


# ---- T5: online vs offline at a matched KL budget ----------------------------------------------------------
T5_BUDGETS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
T5_TIE, T5_GAP = 0.02, 0.1


def frontier(metrics: pd.DataFrame, budgets=T5_BUDGETS) -> pd.DataFrame:
    """Best evaluated reward with KL <= budget, over every evaluation of every run, per sampling regime and
    seed (rows) and budget (columns); NaN where no evaluation is within the budget."""
    evaluated = metrics.dropna(subset=["eval/reward", "eval/kl_ref"])
    rows = {}
    for (regime, seed), frame in evaluated.groupby(["sampling", "seed"]):
        rows[regime, seed] = {b: frame.loc[frame["eval/kl_ref"] <= b, "eval/reward"].max() for b in budgets}
    return pd.DataFrame.from_dict(rows, orient="index")


def verdict_kl_budget(summaries: pd.DataFrame, metrics: pd.DataFrame) -> Verdict:
    numbers, notes = {}, []
    table = frontier(metrics)
    ties, wins = [], []
    for budget in T5_BUDGETS:
        best = {
            r: _put(numbers, f"KL <= {budget:g}: best {r} reward", table.xs(r)[budget]) for r in ("online", "offline")
        }
        if any(math.isnan(v) for v in best.values()):
            continue
        ties.append(best["online"] >= best["offline"] - T5_TIE)
        wins.append(best["online"] - best["offline"] >= T5_GAP)
        notes.append(f"KL <= {budget:g}: {best['online']:.3f} vs {best['offline']:.3f}")
    status = "holds" if ties and all(ties) and any(wins) else "does not hold" if not all(ties) else "inconclusive"
    return Verdict(status, numbers, "best online vs offline reward: " + "; ".join(notes) + ".")


register(
    Finding(
        id="T5",
        title="Online beats offline at a matched KL budget",
        paper="Tang et al. 2024, arXiv:2405.08448, Sec. 3 (performance against KL over a sweep of beta)",
        claim="At the same KL divergence from the reference, online preference optimisation reaches a higher reward.",
        experiment="kl_budget",
        criterion=(
            f"over every evaluation of every run and beta, the best reward with KL <= K (K in "
            f"{', '.join(f'{b:g}' for b in T5_BUDGETS)} nats; mean over seeds): online is never more than {T5_TIE} "
            f"below offline where both have points, and at least {T5_GAP} above it at one budget or more: holds; "
            "offline ahead at some budget: does not hold"
        ),
        verdict=verdict_kl_budget,
        figures=("reward_vs_kl.png", "reward_vs_iteration.png"),
    )
)


# ---- T6: semi-online DPO -----------------------------------------------------------------------------------
T6_OFFLINE_GAP, T6_SEMI, T6_GRPO = 0.2, 0.05, 0.1
T6_KEY = "sampling.sync_every"


def verdict_semi_online(summaries: pd.DataFrame, metrics: pd.DataFrame) -> Verdict:
    numbers = {}
    syncs = [s for s in summaries[T6_KEY].astype(str).unique() if s != "null"]
    syncs = sorted(syncs, key=int)
    dpo = {s: _put(numbers, f"dpo s={s}: final reward", _final(summaries, algo="dpo", **{T6_KEY: s})) for s in syncs}
    offline = _put(numbers, "dpo offline: final reward", _final(summaries, algo="dpo", **{T6_KEY: "null"}))
    grpo = _put(numbers, "grpo s=1: final reward", _final(summaries, algo="grpo", **{T6_KEY: 1}))
    online = dpo.get("1", math.nan)
    semi = [s for s in syncs if 1 < int(s) <= 16]
    checks = [online - offline >= T6_OFFLINE_GAP]
    checks += [dpo[s] >= online - T6_SEMI for s in semi]
    checks.append(abs(grpo - online) <= T6_GRPO)
    text = (
        f"final reward: online DPO {online:.3f}, "
        + ", ".join(f"s={s} {dpo[s]:.3f}" for s in syncs if s != "1")
        + f", offline {offline:.3f}, online GRPO {grpo:.3f}."
    )
    status = "holds" if all(checks) else "does not hold" if not checks[0] else "inconclusive"
    return Verdict(status, numbers, text)


register(
    Finding(
        id="T6",
        title="Semi-online DPO is close to online, far from offline",
        paper="Lanchantin et al. 2025, arXiv:2506.21495 (semi-online DPO, sync period s; offline DPO and GRPO)",
        claim=(
            "Semi-online DPO with a moderate sync period s performs about as well as online DPO and online GRPO, "
            "and far better than offline DPO."
        ),
        experiment="semi_online_sync",
        criterion=(
            f"final reward on hard (mean over seeds): offline DPO at least {T6_OFFLINE_GAP} below online DPO (s=1), "
            f"DPO at every 1 < s <= 16 within {T6_SEMI} of s=1, and online GRPO within {T6_GRPO} of online DPO: "
            "holds if all, does not hold if offline is not behind, inconclusive otherwise"
        ),
        verdict=verdict_semi_online,
    )
)


# The data findings (Tang et al.'s ablations, Lanchantin et al.'s curriculum) register themselves on import.
from alignlab.science import findings_data  # noqa: E402, F401
