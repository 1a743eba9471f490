"""Findings about data (issue 9): Tang et al.'s data ablations and Lanchantin et al.'s reward curriculum.

Each finding here is a `Finding` (alignlab/science/registry.py) with its criterion in criteria.py;
alignlab/science/findings.py registers them after T1-T6 (this module imports the registry only, never
findings.py), so `alignlab-report` runs them on every task that has the roles their experiments ask for.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from alignlab.science.registry import Finding, Verdict, judged, per_seed, score
from alignlab.stats import difference

TANG = "Tang et al. 2024, arXiv:2405.08448"
LANCHANTIN = "Lanchantin et al. 2025, arXiv:2506.21495"


def _with_gap(finding_id: str, summaries: pd.DataFrame, numbers: dict, checks: list, note: str = "") -> Verdict:
    """The verdict of `checks` when online DPO beats reference-data DPO (the part 'needs'); inconclusive when it
    does not: there is then no gap for the data to explain."""
    sides = {d: per_seed(summaries, algo="dpo", data=d) for d in ("online", "reference")}
    gap = score(finding_id, "needs", "online - reference-data DPO", sides, difference("online", "reference"))
    if gap.status != "holds":
        text = f"online DPO does not beat offline DPO by {gap.size:g} ({gap.interval()}): no gap to close"
        return Verdict("inconclusive", numbers, text, tuple([gap, *checks]))
    return judged(finding_id, [*checks, gap], numbers, per_key=lambda c: c.part, note=note)


def _gap_left(on: str, shuffled: str, reference: str):
    return lambda m: (m[on] - m[shuffled]) / (m[on] - m[reference])


def data_coverage(summaries: pd.DataFrame, metrics: pd.DataFrame) -> Verdict:
    numbers, checks = {}, []
    for algo in ("dpo", "best_of_n"):
        sides = {d: per_seed(summaries, algo=algo, data=d) for d in ("online", "shuffled_online", "reference")}
        numbers.update({f"{algo}/{d}": float(v.mean()) for d, v in sides.items()})
        name = f"{algo}: gap left"
        checks.append(score("T5-coverage", algo, name, sides, _gap_left("online", "shuffled_online", "reference")))
    return _with_gap("T5-coverage", summaries, numbers, checks)


def data_quality(summaries: pd.DataFrame, metrics: pd.DataFrame) -> Verdict:
    sides = {d: per_seed(summaries, algo="dpo", data=d) for d in ("online", "reference", "final_policy")}
    numbers = {d: float(v.mean()) for d, v in sides.items()}
    if "pairs/skipped_fraction" in metrics and "data" in metrics:
        skipped = metrics["pairs/skipped_fraction"]
        if "train/skipped_round" in metrics:  # a round with no pair at all logs no fraction: it skipped them all
            skipped = skipped.where(metrics["train/skipped_round"] != 1, 1.0)
        for data in ("final_policy", "reference"):
            numbers[f"{data}/skipped_pairs"] = float(skipped[metrics["data"].astype(str) == data].mean())
    closed = score(
        "T5-quality",
        "closed",
        "dpo: gap closed",
        sides,
        lambda m: (m["final_policy"] - m["reference"]) / (m["online"] - m["reference"]),
    )
    numbers["gap_closed"] = closed.effect
    note = (
        f"pairs skipped as ties {numbers.get('final_policy/skipped_pairs', float('nan')):.0%} (reference data "
        f"{numbers.get('reference/skipped_pairs', float('nan')):.0%})"
    )
    return _with_gap("T5-quality", summaries, numbers, [closed], note)


MIXES = ("verifiable", "nonverifiable", "nv_then_v", "v_then_nv", "mixed")


def reward_curriculum(summaries: pd.DataFrame, metrics: pd.DataFrame) -> Verdict:
    scores, numbers = {}, {}
    for mix in MIXES:
        v = per_seed(summaries, "reward/verifiable", mix=mix)
        nv = per_seed(summaries, "reward/nonverifiable", mix=mix)
        numbers.update({f"{mix}/verifiable": float(v.mean()), f"{mix}/nonverifiable": float(nv.mean())})
        scores[mix] = (v + nv) / 2
        numbers[f"{mix}/both"] = float(scores[mix].mean())
    if any(s.dropna().empty for s in scores.values()):
        return Verdict("inconclusive", numbers, "a curriculum run is missing")
    checks = [
        score("T7-curriculum", "order", "NV->V - V->NV", scores, difference("nv_then_v", "v_then_nv")),
        score(
            "T7-curriculum",
            "mixed",
            "mixed - better single",
            scores,
            lambda m: m["mixed"] - np.maximum(m["verifiable"], m["nonverifiable"]),
        ),
    ]
    return judged("T7-curriculum", checks, numbers)


FINDINGS = [
    Finding(
        id="T5-coverage",
        title="Online data, shuffled, does not make offline DPO online",
        paper=f"{TANG}, Sec. 4 (data coverage ablation)",
        claim="Offline DPO on the shuffled samples of an online run stays well below online DPO; Best-of-2 on "
        "online samples nearly closes the gap.",
        setting=(
            f"offline DPO and Best-of-2 trained on the shuffled samples of an online DPO run, against online DPO "
            f"and offline DPO on reference samples ({TANG}, Sec. 4, the data-coverage ablation)"
        ),
        experiment="t5_data_coverage",
        verdict=data_coverage,
    ),
    Finding(
        id="T5-quality",
        title="Better offline data helps only slightly",
        paper=f"{TANG}, Sec. 4 (data quality ablation)",
        claim="Offline DPO on samples of the final online policy improves only slightly over offline DPO on "
        "reference samples.",
        setting=f"offline DPO from the reference on samples of the final online policy ({TANG}, Sec. 4, data quality)",
        experiment="t5_data_quality",
        verdict=data_quality,
    ),
    Finding(
        id="T7-curriculum",
        title="Non-verifiable then verifiable beats the reverse; mixing works",
        paper=f"{LANCHANTIN} (verifiable and non-verifiable rewards combined)",
        claim="Training on a non-verifiable reward then a verifiable one ends better on both than the reverse "
        "order, and training on both mixed works as well as either alone.",
        setting=(
            f"online training on a verifiable reward, a non-verifiable (reward-model) one, each order of the two and "
            f"their mixture, each evaluated on both ({LANCHANTIN}, the combined-rewards experiments)"
        ),
        experiment="t7_reward_curriculum",
        verdict=reward_curriculum,
    ),
]
