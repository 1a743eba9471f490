"""The findings registry: what a finding is, what a verdict is, and the per-seed tables verdicts read.

findings.py (Tajwar et al., Tang et al., Lanchantin et al.: T1-T6) and findings_data.py (the data ablations and
the curriculum) both import this module and nothing of each other; findings.py registers both sets in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from alignlab.science.criteria import CRITERIA, Criterion
from alignlab.stats import STATUSES, Check, check, combine


@dataclass(frozen=True)
class Verdict:
    status: str  # holds | does not hold | inconclusive
    numbers: dict[str, float]  # measured numbers beside the checks (means over seeds, reported, not scored)
    text: str  # one or two sentences: what was measured against the criterion
    checks: tuple[Check, ...] = ()  # every scored part, with its interval
    per: dict[str, str] = field(default_factory=dict)  # algorithm (or pair) -> its own verdict

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"a verdict is one of {STATUSES}, not {self.status!r}")


@dataclass(frozen=True)
class Finding:
    id: str  # T1, T2, ...
    title: str
    paper: str  # authors, year, arXiv id, section / figure
    claim: str  # one sentence
    setting: str  # the paper's setting that the experiment encodes, with a citation (file:line or section)
    experiment: str  # a file in conf/experiment/
    verdict: Callable[[pd.DataFrame, pd.DataFrame], Verdict]
    figures: tuple[str, ...] = ("reward_vs_iteration.png",)  # alignlab-plot figures the report shows
    overrides: tuple[str, ...] = field(default_factory=tuple)  # extra overrides the report passes
    extension_of: str | None = None  # set for a question the paper did not ask: the finding it extends

    @property
    def criterion(self) -> str:
        return CRITERIA[self.id].words()


FINDINGS: dict[str, Finding] = {}


def register(finding: Finding) -> Finding:
    if finding.id in FINDINGS:
        raise ValueError(f"finding {finding.id} is registered twice")
    if finding.id not in CRITERIA:
        raise ValueError(f"finding {finding.id} has no criterion in alignlab/science/criteria.py")
    FINDINGS[finding.id] = finding
    return finding


def select_runs(summaries: pd.DataFrame, **where) -> pd.DataFrame:
    """The rows of the runs matching `where` (override values compared as strings, as Hydra wrote them)."""
    rows = summaries
    for key, value in where.items():
        if key not in rows:
            return rows.iloc[0:0]
        rows = rows[rows[key].astype(str) == str(value)]
    return rows


def per_seed(summaries: pd.DataFrame, column: str = "reward", **where) -> pd.Series:
    """`column` of the runs matching `where`, one value per seed (indexed by seed)."""
    rows = select_runs(summaries, **where)
    if rows.empty or column not in rows:
        return pd.Series(dtype=float)
    return rows.groupby(rows["seed"].astype(int))[column].mean().astype(float)


def score(finding_id: str, part: str, name: str, columns: dict[str, pd.Series], effect: Callable) -> Check:
    """Check one part of a finding's criterion (its bar read from criteria.py)."""
    bar = CRITERIA[finding_id].parts[part]
    return check(name, columns, effect, direction=bar.direction, size=bar.size, part=part)


def judged(
    finding_id: str, checks: list[Check], numbers: dict, per_key: Callable[[Check], str] | None = None, note: str = ""
) -> Verdict:
    """The verdict of `checks` by the finding's combining rule, with one verdict per algorithm or pair."""
    criterion: Criterion = CRITERIA[finding_id]
    per = {}
    if per_key is not None:
        groups: dict[str, list[str]] = {}
        for c in checks:
            groups.setdefault(per_key(c), []).append(c.status)
        per = {key: combine(statuses, "all") for key, statuses in groups.items()}
    status = combine([c.status for c in checks], criterion.combine)
    text = "; ".join(f"{c.name} {c.interval()}" for c in checks)
    if per:
        text = "; ".join(f"{key}: {value}" for key, value in per.items()) + ". " + text
    return Verdict(status, numbers, (text + (f". {note}" if note else "") + ".").replace("..", "."), tuple(checks), per)
