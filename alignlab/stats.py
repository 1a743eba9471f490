"""Statistics over seeds, shared by the verdicts (alignlab/science/) and the figures (alignlab/plots/): the paired
interval of an effect and the verdict it gives against a criterion, and the reward-KL frontier.

It imports nothing of alignlab, so that both may import it without a circle.

A finding's criterion (alignlab/science/criteria.py) names an effect, a direction and a minimum size. Its check
receives, per seed, the settings it compares (seed s of one setting against seed s of the other) and:

1. computes the effect, a function of the settings' means (a difference, a ratio, a share of a gap), on the
   seeds every setting has;
2. resamples those seeds with replacement (a paired bootstrap, `RESAMPLES` times, seeded: the same data gives
   the same interval on every machine) and takes the 2.5% and 97.5% quantiles: a 95% interval;
3. decides:
   - "at least SIZE": holds when the whole interval is >= SIZE, does not hold when it is < SIZE, else
     inconclusive;
   - "at most SIZE": the mirror;
   - "within SIZE" (|effect| <= SIZE, an equivalence): holds when the interval lies in [-SIZE, SIZE], does not
     hold when it lies outside it, else inconclusive.
4. For an inconclusive check: how many seeds the interval's width (which shrinks as 1 / sqrt(seeds)) needs to
   leave the bar on the side of the point estimate: the seeds to add that would likely decide it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

RESAMPLES = 4000
SEED = 0
DIRECTIONS = ("at least", "at most", "within")
STATUSES = ("holds", "does not hold", "inconclusive")


@dataclass(frozen=True)
class Check:
    """One scored comparison: the effect over seeds, its 95% interval and what it says against the bar."""

    name: str  # e.g. "dpo: online - offline on hard"
    effect: float
    low: float
    high: float
    seeds: int
    direction: str  # at least | at most | within
    size: float
    status: str
    more_seeds: int | None = None  # inconclusive only: seeds to add that would likely decide it; None: none would
    part: str = ""  # the criterion's part this scores (alignlab/science/criteria.py)
    undecidable: bool = False  # the data cannot speak to the bar (e.g. both sides censored): inconclusive

    def interval(self, digits: int = 3) -> str:
        return f"{self.effect:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def line(self) -> str:
        """'name: effect [low, high] (n seeds) vs at least SIZE: status'."""
        more = ""
        if self.status == "inconclusive":
            count = f"{self.more_seeds} more seed" + "s" * (self.more_seeds != 1) if self.more_seeds else ""
            more = f"; about {count} would decide it" if self.more_seeds else "; at the bar"
        bar = f"{self.direction} {self.size:g}"
        return f"{self.name}: {self.interval()} ({self.seeds} seeds) vs {bar}: {self.status}{more}"


def seed_table(columns: dict[str, pd.Series]) -> pd.DataFrame:
    """One row per seed that every column has (a Series indexed by seed each), NaN values dropped."""
    table = pd.DataFrame({name: pd.Series(values, dtype=float) for name, values in columns.items()})
    return table.dropna().sort_index()


def difference(a: str, b: str) -> Callable:
    """The effect mean(a) - mean(b)."""
    return lambda m: m[a] - m[b]


def ratio(a: str, b: str) -> Callable:
    """The effect mean(a) / mean(b)."""
    return lambda m: m[a] / m[b]


def paired_interval(columns: dict[str, pd.Series], effect: Callable) -> tuple[float, float, float, int]:
    """(effect, low, high, seeds): `effect` of the columns' means over the seeds every column has, and its
    paired bootstrap 95% interval (whole seeds resampled, so the pairing is kept; seeded)."""
    table = seed_table(columns)
    n = len(table)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    values = table.to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        point = float(effect(dict(zip(table.columns, values.mean(axis=0), strict=True))))
        if n == 1:
            return point, point, point, 1
        picks = np.random.default_rng(SEED).integers(0, n, size=(RESAMPLES, n))
        means = values[picks].mean(axis=1)  # (resamples, columns)
        samples = np.asarray(effect({c: means[:, i] for i, c in enumerate(table.columns)}), dtype=float)
    samples = samples[np.isfinite(samples)]
    if not len(samples):
        return point, math.nan, math.nan, n
    low, high = np.quantile(samples, [0.025, 0.975])
    return point, float(low), float(high), n


def decide(effect: float, low: float, high: float, direction: str, size: float) -> str:
    if direction not in DIRECTIONS:
        raise ValueError(f"a criterion's direction is one of {DIRECTIONS}, not {direction!r}")
    if any(math.isnan(x) for x in (effect, low, high)):
        return "inconclusive"
    if direction == "at least":
        return "holds" if low >= size else "does not hold" if high < size else "inconclusive"
    if direction == "at most":
        return "holds" if high <= size else "does not hold" if low > size else "inconclusive"
    return (
        "holds"
        if -size <= low and high <= size
        else "does not hold"
        if low > size or high < -size
        else ("inconclusive")
    )


def seeds_to_decide(effect: float, low: float, high: float, seeds: int, direction: str, size: float) -> int | None:
    """Seeds to add so that the interval, shrinking as 1 / sqrt(seeds), would leave the bar on the side of
    the point estimate; None when the estimate sits on the bar (or there are too few seeds to tell)."""
    if seeds < 2 or any(math.isnan(x) for x in (effect, low, high)):
        return None
    bars = (-size, size) if direction == "within" else (size,)
    distance = min(abs(effect - bar) for bar in bars)
    half = (high - low) / 2
    if distance <= 1e-12 or half <= 0:
        return None
    needed = math.ceil(round(seeds * (half / distance) ** 2, 9))  # round: 0.35 - 0.15 is not exactly 0.2
    return max(needed - seeds, 1)


def check(
    name: str, columns: dict[str, pd.Series], effect: Callable, *, direction: str, size: float, part: str = ""
) -> Check:
    """Score `effect` (a function of the columns' means over seeds) against the bar `direction size`."""
    point, low, high, n = paired_interval(columns, effect)
    status = decide(point, low, high, direction, size)
    more = seeds_to_decide(point, low, high, n, direction, size) if status == "inconclusive" else None
    return Check(name, point, low, high, n, direction, size, status, more, part)


def combine(statuses: list[str], rule: str = "all") -> str:
    """Checks into one verdict. 'all' (a claim made of each part): holds if every part holds, does not hold if
    any part does not hold, inconclusive otherwise. 'any': holds if some part holds, does not hold if every
    part does not, inconclusive otherwise."""
    if not statuses:
        return "inconclusive"
    if rule == "all":
        if "does not hold" in statuses:
            return "does not hold"
        return "holds" if all(s == "holds" for s in statuses) else "inconclusive"
    if rule == "any":
        if "holds" in statuses:
            return "holds"
        return "does not hold" if all(s == "does not hold" for s in statuses) else "inconclusive"
    raise ValueError(f"a combining rule is 'all' or 'any', not {rule!r}")


def mean_interval(values) -> tuple[float, float, float]:
    """(mean, low, high): the mean over seeds of `values` and its bootstrap 95% interval (as in `check`)."""
    mean, low, high, _ = paired_interval({"x": pd.Series(values, dtype=float).reset_index(drop=True)}, lambda m: m["x"])
    return mean, low, high


def frontier(metrics: pd.DataFrame, budgets, by=("sampling", "seed")) -> pd.DataFrame:
    """Best evaluated reward with KL <= budget, over every evaluation of every run in a group of `by` (every
    beta, every iteration), per group (rows) and budget (columns); NaN where no evaluation is within it."""
    evaluated = metrics.dropna(subset=["eval/reward", "eval/kl_ref"])
    rows = {}
    for key, frame in evaluated.groupby(list(by)):
        rows[key] = {b: frame.loc[frame["eval/kl_ref"] <= b, "eval/reward"].max() for b in budgets}
    return pd.DataFrame.from_dict(rows, orient="index")
