"""The papers' findings: each one a claim, the paper's setting it is tested in, an experiment and a verdict.

A finding names its paper, the claim in one sentence, the setting the paper measured it in (with a citation),
the experiment (a file in conf/experiment/) that encodes that setting on any task with the roles it needs, and
`verdict(summaries, metrics) -> Verdict`. Its criterion (effect, direction, minimum size) and the history of
that criterion live in alignlab/science/criteria.py; the paired statistics over seeds in alignlab/stats.py.
`alignlab-report` runs the experiments and writes the verdicts (alignlab/science/report.py). A question the
paper did not ask keeps its own id and `extension_of`, never the paper's name.

The two tables a verdict reads (alignlab/science/sweep.py, `load_sweep_tables`):
- summaries: one row per run and seed: a column per swept override key as written (`sampling`, `algo`,
  `task.reward`, `sampling.updates_per_batch`, ...), `seed`, and every key of that seed's summary.json;
- metrics: the same identifying columns, `iteration`, and every column of the run's metrics.csv.
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd

from alignlab import stats
from alignlab.science import findings_data
from alignlab.science.criteria import CRITERIA
from alignlab.science.registry import FINDINGS, Finding, Verdict, judged, per_seed, register, score, select_runs
from alignlab.science.sweep import load_sweep_tables
from alignlab.stats import difference, ratio

__all__ = ["FINDINGS", "Finding", "Verdict", "iterations_to_level", "load_sweep_tables", "select_runs"]

TAJWAR = "Tajwar et al. 2024, arXiv:2404.14367"
CODE = "github.com/Asap7772/understanding-rlhf"


# ---- T1: on-policy sampling on hard and easy ---------------------------------------------------------------
def verdict_on_policy(summaries: pd.DataFrame, metrics: pd.DataFrame) -> Verdict:
    checks, numbers = [], {}
    for algo in sorted(summaries["algo"].astype(str).unique()):
        for reward in ("hard", "easy"):
            where = {"algo": algo, "task.reward": reward}
            sides = {r: per_seed(summaries, sampling=r, **where) for r in ("online", "offline")}
            for r, values in sides.items():
                numbers[f"{algo} {r} on {reward}: final reward"] = float(values.mean())
            checks.append(score("T1", reward, f"{algo} on {reward}", sides, difference("online", "offline")))
    return judged("T1", checks, numbers, per_key=lambda c: c.name.split(" ")[0])


register(
    Finding(
        id="T1",
        title="On-policy sampling matters where the optimum is unlikely under the reference",
        paper=f"{TAJWAR}, Sec. 5 (on-policy sampling, R1 vs R2 bandits)",
        claim="Online methods beat their offline versions by far on the hard reward and by little on the easy one.",
        setting=(
            f"online against offline on a reward peaked where the reference is unlikely (R1, our hard) and at its "
            f"mode (R2, easy): {CODE} bandit_experiment/scripts/onpolicy_best_of_n.sh:6 (reward_functions 4 and 5), "
            "reward_functions.py:39-57 (peaks at 70 and 20). Their on-policy runs take 15 gradient steps per batch "
            "(onpolicy_best_of_n.sh:9); the tier-1 bandit takes 1, the contextual bandit their 15. Tier 3 takes their "
            "LLM setting: length rewards, offline DPO on a dataset named as the SFT reference's samples relabeled by "
            "min length or mode length (llm_experiment/scripts/run_dpo.sh:26-31), online with reward models of the "
            "same rewards (run_online_dpo_single.sh:44-59); on SmolLM2 hard = short answers, unlikely under the "
            "reference; easy = long ones, peaked at the reference's mode (84% of its samples reach the 24-token cap); "
            "offline = reference samples drawn once and scored"
        ),
        experiment="online_vs_offline",
        verdict=verdict_on_policy,
        figures=("reward_vs_iteration.png", "reward_vs_kl.png"),
    )
)


# ---- T2: negative gradients --------------------------------------------------------------------------------
def iterations_to_level(metrics: pd.DataFrame, level: float = CRITERIA["T2"].params["level"]) -> pd.Series:
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


def _negative_gradient(finding_id: str):
    def verdict(summaries: pd.DataFrame, metrics: pd.DataFrame) -> Verdict:
        criterion = CRITERIA[finding_id]
        runs = metrics.groupby("run")[["algo", "seed"]].first()
        runs["iterations"] = iterations_to_level(metrics, criterion.params["level"])
        runs["censored"] = runs["iterations"] > metrics.groupby("run")["iteration"].max()  # never reached it
        speed = {a: g.set_index(g["seed"].astype(int))["iterations"] for a, g in runs.groupby("algo")}
        never = {a: bool(g["censored"].all()) for a, g in runs.groupby("algo")}
        numbers = {f"{a}: iterations to the level (mean)": float(s.mean()) for a, s in speed.items()}
        checks = []
        for negative, positive in criterion.params["pairs"]:
            if negative in speed and positive in speed:
                sides = {negative: speed[negative], positive: speed[positive]}
                part = score(finding_id, "speed", f"{negative} / {positive}", sides, ratio(negative, positive))
                if never[negative] and never[positive]:  # both censored at the run's length: no speed to compare
                    part = dataclasses.replace(part, name=part.name + " (neither reaches the level)",
                                               status="inconclusive", more_seeds=None, undecidable=True)  # fmt: skip
                checks.append(part)
        dpo = metrics[metrics["algo"].astype(str) == "dpo"]
        if {"logps/chosen", "logps/rejected", "logps/margin"} <= set(dpo.columns) and not dpo.empty:
            for column in ("logps/chosen", "logps/rejected", "logps/margin"):
                per_run = dpo.dropna(subset=[column]).sort_values("iteration").groupby("run")[column]
                numbers[f"dpo: change of {column} (mean, not scored)"] = float(
                    (per_run.last() - per_run.first()).mean()
                )
        return judged(finding_id, checks, numbers, per_key=lambda c: c.name)

    return verdict


register(
    Finding(
        id="T2",
        title="Negative gradients speed learning",
        paper=f"{TAJWAR}, Sec. 5 (negative gradient; Best-of-N and Pref-FT vs DPO/IPO)",
        claim=(
            "An objective that also pushes down worse samples reaches a reward level in fewer iterations than "
            "maximum likelihood on the preferred samples alone, and can lower chosen and rejected log-probs "
            "while the margin grows."
        ),
        setting=(
            f"offline, from one dataset drawn once from the reference, on the reward peaked at the reference's mode "
            f"(our easy): {CODE} bandit_experiment/scripts/best_of_n.sh:5-9 and ipo.sh:6-10 (reward_function 5, "
            "epochs=1, 200 steps on the batch), bandit_learner.py:322-331 (epoch 0 samples from pi_data), "
            "reward_functions.py:49-57"
        ),
        experiment="negative_gradient",
        verdict=_negative_gradient("T2"),
        figures=("reward_vs_iteration.png", "logps.png"),
    )
)

register(
    Finding(
        id="T2-online-hard",
        title="Extension: negative gradients online on the hard reward",
        paper=f"{TAJWAR}, Sec. 5 (negative gradient); the paper tests it offline on easy (T2)",
        claim=(
            "(alignlab's question, not the paper's) The negative-gradient objectives also reach the level in fewer "
            "iterations when they sample online on the hard reward."
        ),
        setting="not the paper's: online sampling on hard (the setting T2 was tested in before 2026-12-03)",
        experiment="negative_gradient_online_hard",
        verdict=_negative_gradient("T2-online-hard"),
        figures=("reward_vs_iteration.png",),
        extension_of="T2",
    )
)


# ---- T3: sample reuse --------------------------------------------------------------------------------------
T3_KEY = "sampling.updates_per_batch"


def verdict_sample_reuse(summaries: pd.DataFrame, metrics: pd.DataFrame) -> Verdict:
    reuse = sorted(summaries[T3_KEY].astype(int).unique())
    low, high = reuse[0], reuse[-1]
    numbers, checks = {}, []
    for algo in ("ppo", "best_of_n", "dpo"):
        sides = {t: per_seed(summaries, algo=algo, **{T3_KEY: t}) for t in reuse}
        for t, values in sides.items():
            numbers[f"{algo} T={t}: final reward"] = float(values.mean())
        if algo in CRITERIA["T3"].parts and not sides[low].empty:
            pair = {"high": sides[high], "low": sides[low]}
            checks.append(score("T3", algo, f"{algo} T={high} - T={low}", pair, difference("high", "low")))
    return judged("T3", checks, numbers, per_key=lambda c: c.part)


register(
    Finding(
        id="T3",
        title="Sample reuse: a clipped ratio tolerates it, filtered likelihood overfits",
        paper=f"{TAJWAR}, Sec. 5 (sample reuse, T gradient steps per on-policy batch)",
        claim=(
            "Reusing each on-policy batch for T steps does not cost PPO (its clipped ratio corrects for the stale "
            "batch), while Best-of-N and DPO, with nothing that corrects for it, overfit the reused batch and lose "
            "reward against T = 1."
        ),
        setting=(
            "online on the hard reward, T gradient steps on each batch at a fixed number of rounds, T = 1 as the "
            f"baseline: Sec. 5's sample-reuse comparison; the on-policy bandit scripts fix T = 15 ({CODE} "
            "bandit_experiment/scripts/onpolicy_best_of_n.sh:9, num_iterations_on_same_samples)"
        ),
        experiment="sample_reuse",
        verdict=verdict_sample_reuse,
    )
)


# ---- T4: batch size at a fixed sample budget ---------------------------------------------------------------
T4_KEY = "sampling.prompts_per_round"


def verdict_batch_size(summaries: pd.DataFrame, metrics: pd.DataFrame) -> Verdict:
    sizes = sorted(metrics[T4_KEY].astype(int).unique())
    small, large = sizes[0], sizes[-1]
    evaluated = metrics.dropna(subset=["eval/reward"])
    numbers, checks = {}, []
    for algo in sorted(metrics["algo"].astype(str).unique()):
        area = {}
        for b in sizes:
            rows = evaluated[(evaluated["algo"] == algo) & (evaluated[T4_KEY].astype(int) == b)]
            per_run = rows.groupby("run").agg(seed=("seed", "first"), area=("eval/reward", "mean"))
            area[b] = per_run.set_index(per_run["seed"].astype(int))["area"]  # evaluations evenly spaced in prompts
            numbers[f"{algo} B={b}: mean reward over the budget"] = float(area[b].mean())
        sides = {"small": area[small], "large": area[large]}
        checks.append(score("T4", "budget", f"{algo} B={small} - B={large}", sides, difference("small", "large")))
    return judged("T4", checks, numbers, per_key=lambda c: c.name.split(" ")[0])


register(
    Finding(
        id="T4",
        title="At a fixed sample budget, smaller rounds (fresher data) learn faster",
        paper=f"{TAJWAR}, Sec. 5 (on-policyness: samples per round at a fixed minibatch)",
        claim=(
            "At a fixed minibatch size and sample budget, a smaller round B (more on-policy data, same number of "
            "samples and gradient steps) reaches high reward with fewer samples."
        ),
        setting=(
            "online on the hard reward, a fixed budget of prompts and a fixed minibatch, the round size B varied: "
            "Sec. 5's on-policyness comparison (the number of samples drawn per round at a fixed minibatch size)"
        ),
        experiment="batch_size",
        verdict=verdict_batch_size,
    )
)


# ---- T5: online vs offline at a matched KL budget ----------------------------------------------------------
def frontier(metrics: pd.DataFrame, budgets=tuple(CRITERIA["T5"].params["budgets"]), by=("sampling", "seed")):
    """T5's frontier (alignlab/stats.py, the one the figures draw) at the criterion's budgets."""
    return stats.frontier(metrics, budgets, by)


def verdict_kl_budget(summaries: pd.DataFrame, metrics: pd.DataFrame) -> Verdict:
    table = frontier(metrics)
    table.index = pd.MultiIndex.from_tuples(table.index, names=["sampling", "seed"])
    common = [b for b in table.columns if table[b].notna().all()]  # budgets every seed of both regimes reaches
    numbers = {}
    for regime in ("online", "offline"):
        for b in table.columns:
            numbers[f"KL <= {b:g}: best {regime} reward (mean)"] = float(table.xs(regime)[b].mean())
    sides = {}
    for regime in ("online", "offline"):
        part = table.xs(regime)[common]
        sides[regime] = part.mean(axis=1).set_axis(part.index.astype(int)) if common else pd.Series(dtype=float)
    budgets = ", ".join(f"{b:g}" for b in common) or "none"
    checks = [score("T5", "frontier", f"online - offline (KL <= {budgets})", sides, difference("online", "offline"))]
    return judged("T5", checks, numbers)


register(
    Finding(
        id="T5",
        title="Online beats offline at a matched KL budget",
        paper="Tang et al. 2024, arXiv:2405.08448, Sec. 3 (performance against KL over a sweep of beta)",
        claim="At the same KL divergence from the reference, online preference optimisation reaches a higher reward.",
        setting=(
            "online against offline DPO/IPO over a sweep of the regularisation beta, compared on the reward-KL "
            "frontier, not at equal beta: Tang et al. 2024, Sec. 3 and its KL-vs-performance figure"
        ),
        experiment="kl_budget",
        verdict=verdict_kl_budget,
        figures=("reward_vs_kl.png", "reward_vs_iteration.png"),
    )
)


# ---- T6: semi-online DPO -----------------------------------------------------------------------------------
T6_KEY = "sampling.sync_every"


def _semi_online(finding_id: str):
    def verdict(summaries: pd.DataFrame, metrics: pd.DataFrame) -> Verdict:
        online = per_seed(summaries, algo="dpo", **{T6_KEY: 1})
        offline = per_seed(summaries, algo="dpo", **{T6_KEY: "null"})
        grpo = per_seed(summaries, algo="grpo", **{T6_KEY: 1})
        numbers = {"dpo s=1: final reward": float(online.mean()), "dpo offline: final reward": float(offline.mean())}
        numbers["grpo s=1: final reward"] = float(grpo.mean())
        pair = {"on": online, "off": offline}
        checks = [score(finding_id, "offline", "online - offline DPO", pair, difference("on", "off"))]
        iterations = per_seed(summaries, "iterations", algo="dpo", **{T6_KEY: 1})
        budget = float(iterations.min()) if len(iterations) else math.inf
        for s in CRITERIA[finding_id].params["semi"]:
            if s >= budget:  # its sampler is never refreshed: that run is offline DPO, not semi-online
                numbers[f"dpo s={s}: not semi-online in {budget:g} iterations (never refreshed), not scored"] = math.nan
                continue
            semi = per_seed(summaries, algo="dpo", **{T6_KEY: s})
            numbers[f"dpo s={s}: final reward"] = float(semi.mean())
            pair = {"on": online, "semi": semi}
            checks.append(score(finding_id, "semi", f"online - s={s} DPO", pair, difference("on", "semi")))
        pair = {"grpo": grpo, "dpo": online}
        checks.append(score(finding_id, "grpo", "online GRPO - DPO", pair, difference("grpo", "dpo")))
        return judged(finding_id, checks, numbers)

    return verdict


LANCHANTIN = "Lanchantin et al. 2025, arXiv:2506.21495"
T6_CLAIM = (
    "Semi-online DPO with a moderate sync period s performs about as well as online DPO and online GRPO, and far "
    "better than offline DPO."
)

register(
    Finding(
        id="T6",
        title="Semi-online DPO is close to online, far from offline",
        paper=f"{LANCHANTIN}, Sec. 3-4 (semi-online DPO, sync period s; offline DPO, GRPO)",
        claim=T6_CLAIM,
        setting=(
            "DPO whose sampler is refreshed every s steps (s = 1 online, s = infinity offline, seed data from the "
            "reference) against online GRPO, on verifiable math with a checker as the reward (the paper's "
            "comparison of offline, semi-online and online DPO and GRPO on NuminaMath): our verifiable role, "
            "generated arithmetic on tiers 2 and 3"
        ),
        experiment="semi_online_verifiable",
        verdict=_semi_online("T6"),
    )
)

register(
    Finding(
        id="T6-hard",
        title="Extension: semi-online DPO on the hard reward",
        paper=f"{LANCHANTIN}; the paper compares the regimes on verifiable math (T6)",
        claim="(alignlab's question, not the paper's) " + T6_CLAIM[0].lower() + T6_CLAIM[1:],
        setting="not the paper's: the hard reward (the bandits have no verifiable one); the sweep of T6",
        experiment="semi_online_sync",
        verdict=_semi_online("T6-hard"),
        extension_of="T6",
    )
)


for _finding in findings_data.FINDINGS:
    register(_finding)
