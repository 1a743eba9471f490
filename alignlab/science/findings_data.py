"""Findings about data (issue 9): Tang et al.'s data ablations and Lanchantin et al.'s reward curriculum.

Each finding is registered in the findings registry (alignlab/science/findings.py, which imports this module), so
`alignlab-report` runs it on every task that has the roles its experiment asks for: an id, a title, the paper,
a claim, the experiment (a file in conf/experiment/), a criterion, and a verdict computed from the sweep's
summaries and metrics (`alignlab.science.findings.load_sweep_tables`).
"""

from __future__ import annotations

import pandas as pd

from alignlab.science.findings import Finding, Verdict, register, select_runs

MIN_GAP = 0.02  # an online-offline reward gap below this is no gap to explain


def _mean(summaries: pd.DataFrame, column: str, **where) -> float:
    rows = select_runs(summaries, **where)
    if rows.empty or column not in rows:
        return float("nan")
    return float(rows[column].mean())


def data_coverage(summaries: pd.DataFrame, metrics: pd.DataFrame) -> Verdict:
    numbers = {}
    left = {}
    for algo in ("dpo", "best_of_n"):
        online, shuffled, reference = (
            _mean(summaries, "reward", algo=algo, data=d) for d in ("online", "shuffled_online", "reference")
        )
        numbers.update({f"{algo}/online": online, f"{algo}/shuffled_online": shuffled, f"{algo}/reference": reference})
        gap = online - reference
        left[algo] = (online - shuffled) / gap if gap > MIN_GAP else float("nan")
        numbers[f"{algo}/gap_left"] = left[algo]
    if not left["dpo"] == left["dpo"]:  # NaN: online DPO does not beat offline DPO here
        return Verdict("inconclusive", numbers, f"online DPO does not beat offline DPO by {MIN_GAP}: no gap to close")
    bon_left = (
        f"{left['best_of_n']:.0%} left"
        if left["best_of_n"] == left["best_of_n"]
        else f"online Best-of-2 does not beat it by {MIN_GAP}"
    )
    text = (
        f"DPO online {numbers['dpo/online']:.3f}, on the shuffled online data {numbers['dpo/shuffled_online']:.3f}, "
        f"on reference data {numbers['dpo/reference']:.3f} ({left['dpo']:.0%} of the gap left); Best-of-2 "
        f"{numbers['best_of_n/online']:.3f} / {numbers['best_of_n/shuffled_online']:.3f} / "
        f"{numbers['best_of_n/reference']:.3f} ({bon_left})"
    )
    if left["dpo"] <= 0.25:
        return Verdict("does not hold", numbers, text + ": shuffling the online data closes DPO's gap")
    if left["best_of_n"] == left["best_of_n"] and left["best_of_n"] < 0.25:
        return Verdict("holds", numbers, text)
    return Verdict("does not hold", numbers, text + ": Best-of-2 on the shuffled online data does not close it either")


def data_quality(summaries: pd.DataFrame, metrics: pd.DataFrame) -> Verdict:
    online, reference, final = (
        _mean(summaries, "reward", algo="dpo", data=d) for d in ("online", "reference", "final_policy")
    )
    numbers = {"online": online, "reference": reference, "final_policy": final}
    if "pairs/skipped_fraction" in metrics and "data" in metrics:
        skipped = metrics["pairs/skipped_fraction"]
        if "train/skipped_round" in metrics:  # a round with no pair at all logs no fraction: it skipped them all
            skipped = skipped.where(metrics["train/skipped_round"] != 1, 1.0)
        for data in ("final_policy", "reference"):
            numbers[f"{data}/skipped_pairs"] = float(skipped[metrics["data"].astype(str) == data].mean())
    gap = online - reference
    if not gap > MIN_GAP:
        return Verdict("inconclusive", numbers, f"online DPO does not beat offline DPO by {MIN_GAP}: no gap to close")
    closed = (final - reference) / gap
    numbers["gap_closed"] = closed
    text = (
        f"offline DPO on the final online policy's samples {final:.3f}, on reference samples {reference:.3f}, online "
        f"{online:.3f}: {closed:.0%} of the gap closed; pairs skipped as ties "
        f"{numbers.get('final_policy/skipped_pairs', float('nan')):.0%} (reference data "
        f"{numbers.get('reference/skipped_pairs', float('nan')):.0%})"
    )
    return Verdict("holds" if closed < 0.5 else "does not hold", numbers, text)


def reward_curriculum(summaries: pd.DataFrame, metrics: pd.DataFrame) -> Verdict:
    numbers = {}
    both = {}
    for mix in ("verifiable", "nonverifiable", "nv_then_v", "v_then_nv", "mixed"):
        v = _mean(summaries, "reward/verifiable", mix=mix)
        nv = _mean(summaries, "reward/nonverifiable", mix=mix)
        numbers.update({f"{mix}/verifiable": v, f"{mix}/nonverifiable": nv})
        both[mix] = (v + nv) / 2
        numbers[f"{mix}/both"] = both[mix]
    if any(value != value for value in both.values()):
        return Verdict("inconclusive", numbers, "a curriculum run is missing")
    best_single = max(both["verifiable"], both["nonverifiable"])
    text = "mean of the verifiable and non-verifiable evaluation rewards: " + ", ".join(
        f"{m} {both[m]:.3f} (V {numbers[m + '/verifiable']:.3f}, NV {numbers[m + '/nonverifiable']:.3f})" for m in both
    )
    holds = both["nv_then_v"] > both["v_then_nv"] and both["mixed"] >= best_single - 0.05
    return Verdict("holds" if holds else "does not hold", numbers, text)


FINDINGS = [
    register(
        Finding(
            id="T5-coverage",
            title="Online data, shuffled, does not make offline DPO online",
            paper="Tang et al. 2024, arXiv:2405.08448, Sec. 4 (data coverage ablation)",
            claim="Offline DPO on the shuffled samples of an online run stays well below online DPO; Best-of-2 on "
            "online samples nearly closes the gap.",
            experiment="t5_data_coverage",
            criterion="gap left = (online - shuffled) / (online - reference data), mean over seeds; holds when DPO's "
            "gap left exceeds 25% and Best-of-2's is below 25%; inconclusive when online DPO beats reference-data DPO "
            "by less than 0.02",
            verdict=data_coverage,
        )
    ),
    register(
        Finding(
            id="T5-quality",
            title="Better offline data helps only slightly",
            paper="Tang et al. 2024, arXiv:2405.08448, Sec. 4 (data quality ablation)",
            claim="Offline DPO on samples of the final online policy improves only slightly over offline DPO on "
            "reference samples.",
            experiment="t5_data_quality",
            criterion="gap closed = (final-policy data - reference data) / (online - reference data), DPO, mean over "
            "seeds; holds when below 50%; the skipped-pair (tie) fraction is reported beside it",
            verdict=data_quality,
        )
    ),
    register(
        Finding(
            id="T7-curriculum",
            title="Non-verifiable then verifiable beats the reverse; mixing works",
            paper="Lanchantin et al. 2025, arXiv:2506.21495 (verifiable and non-verifiable rewards combined)",
            claim="Training on a non-verifiable reward then a verifiable one ends better on both than the reverse "
            "order, and training on both mixed works as well as either alone.",
            experiment="t7_reward_curriculum",
            criterion="score = mean of eval/reward/verifiable and eval/reward/nonverifiable; holds when NV->V's score "
            "exceeds V->NV's and mixed's is within 0.05 of the better single-reward run's",
            verdict=reward_curriculum,
        )
    ),
]
