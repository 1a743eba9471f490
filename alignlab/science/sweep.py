"""Reading a findings sweep: exactly the runs of its experiment, finished and whole, or a line naming each one.

`read_sweep(root, expected)` walks every run (a directory with metrics.csv) below `root` and keeps a run only
when it is finished (summary.json exists), whole (summary.json parses and has a finite `reward`; metrics.csv
parses with an `iteration` column) and, when `expected` is given, made with the experiment's configuration:
`expected(run_overrides)` returns the configuration the run should have (the experiment's, with the run's own
values of the swept keys), and any other key that differs, seed aside, refuses the run. Each refused run is one
line that names it and says what to do; nothing refused is averaged.
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

IGNORED_OVERRIDES = ("experiment", "num_seeds", "seed", "force", "plot", "train.progress", "task")
SEED_KEYS = ("seed", "num_seeds")  # differ between the seeds of one job by design
# Words, not settings: a run made before the note was written, or with another, has the same numbers.
NOTE_KEYS = ("findings.seeds_note",)
# libyaml's parser when PyYAML has it: the same objects as yaml.safe_load, ten times faster on a report's
# thousands of run records.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Sweep:
    summaries: pd.DataFrame
    metrics: pd.DataFrame
    refused: list[str] = field(default_factory=list)  # one line per run left out, naming it and the fix


def run_overrides(run_dir: Path) -> list[str]:
    path = Path(run_dir) / ".hydra" / "overrides.yaml"
    return (yaml.load(path.read_text(), Loader=YAML_LOADER) or []) if path.exists() else []


def _identity(run_dir: Path) -> dict[str, str]:
    pairs = dict(o.split("=", 1) for o in run_overrides(run_dir) if "=" in o)
    return {k: v for k, v in pairs.items() if not (k in IGNORED_OVERRIDES or k.startswith("hydra."))}


def flatten(tree, prefix: str = "") -> dict[str, str]:
    """{'a.b': 'value'} for every leaf of a nested dict, values as text."""
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out if tree else {prefix[:-1]: "{}"}
    return {prefix[:-1]: json.dumps(tree, sort_keys=True)}


def config_difference(run_dir: Path, wanted: dict[str, str]) -> list[str]:
    """Keys whose value in the run's .hydra/config.yaml differs from `wanted` (flattened), seed keys aside."""
    path = Path(run_dir) / ".hydra" / "config.yaml"
    if not path.exists():
        return ["(no .hydra/config.yaml)"]
    have = flatten(yaml.load(path.read_text(), Loader=YAML_LOADER) or {})
    keys = sorted(set(have) | set(wanted))
    return [
        k
        for k in keys
        if k.split(".")[0] not in SEED_KEYS
        and k not in NOTE_KEYS
        and have.get(k) != wanted.get(k)
        and not _role_added_since(k, have)
    ]


def _role_added_since(key: str, have: dict[str, str]) -> bool:
    """A reward role the task gained after the run was made (tier 3's `easy`): a role the run's config does not
    name cannot have given it its reward, so it leaves the run's numbers as they were. A role whose reward
    changed, or that the task lost, still refuses the run."""
    return key.startswith("task.roles.") and key not in have


def _whole_summary(path: Path) -> tuple[dict | None, str]:
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, f"its {SUMMARY} does not parse ({type(error).__name__})"
    if not isinstance(summary, dict) or "reward" not in summary:
        return None, f"its {SUMMARY} lacks the key 'reward'"
    bad = [k for k, v in summary.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        return None, f"its {SUMMARY} has non-finite {', '.join(bad)}"
    return summary, ""


def read_metrics(path: Path) -> tuple[pd.DataFrame | None, str]:
    """(the table, '') or (None, why it cannot be read): empty, header-only, binary or without `iteration`."""
    try:
        frame = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        return None, f"its {METRICS} does not parse as CSV ({type(error).__name__})"
    if "iteration" not in frame or frame.empty:
        return None, f"its {METRICS} has no rows" if "iteration" in frame else f"its {METRICS} has no iteration column"
    return frame, ""


def read_sweep(root: Path, expected: Callable[[list[str]], dict[str, str]] | None = None) -> Sweep:
    summary_rows, metric_frames, refused = [], [], []
    for metrics_path in sorted(Path(root).rglob(METRICS)):
        run = metrics_path.parent
        summary_path = run / SUMMARY
        if not summary_path.exists():
            refused.append(f"{run}: unfinished (no {SUMMARY}). Fix: run alignlab-report again (it resumes the run).")
            continue
        summary, why = _whole_summary(summary_path)
        frame, why_metrics = read_metrics(metrics_path) if summary is not None else (None, "")
        if summary is None or frame is None:
            refused.append(f"{run}: {why or why_metrics}. Fix: re-run it (force=true) or delete it.")
            continue
        if expected is not None:
            differing = config_difference(run, expected(run_overrides(run)))
            if differing:
                shown = ", ".join(differing[:6]) + (f" and {len(differing) - 6} more" if len(differing) > 6 else "")
                refused.append(
                    f"{run}: made with another configuration than the experiment's ({shown} differ). "
                    "Fix: delete it, or report into another --out."
                )
                continue
        ident = _identity(run)
        ident["seed"] = int(summary.get("seed", 0))
        summary_rows.append({**summary, **ident, "run": str(run)})
        for key, value in ident.items():
            frame[key] = value
        frame["run"] = str(run)
        metric_frames.append(frame)
    summaries = pd.DataFrame(summary_rows)
    metrics = pd.concat(metric_frames, ignore_index=True) if metric_frames else pd.DataFrame()
    return Sweep(summaries, metrics, refused)


def load_sweep_tables(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summaries, metrics) of every finished, whole run below `root` (one row per run and seed in summaries)."""
    sweep = read_sweep(root)
    return sweep.summaries, sweep.metrics
