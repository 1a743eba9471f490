"""alignlab-report runs several sweeps at once (--jobs): the same runs, verdicts and report as one at a time."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from alignlab.science.report import default_jobs
from tests.conftest import run_cli

# Two findings whose sweeps run at once; T5-coverage's data ablations read a sibling job's run (order matters).
TINY = ["--only", "T2,T5-coverage", "train.iterations=6", "findings.seeds=2"]


@pytest.mark.slow
def test_sweeps_run_at_once_give_the_verdicts_and_runs_of_one_at_a_time(tmp_path):
    for jobs in ("1", "3"):
        run_cli([*TINY, "--jobs", jobs, "--out", f"jobs{jobs}"], tmp_path, module="alignlab.science.report")
    one, three = tmp_path / "jobs1", tmp_path / "jobs3"
    assert (one / "verdicts.json").read_bytes() == (three / "verdicts.json").read_bytes()
    assert [r["finding"] for r in json.loads((one / "verdicts.json").read_text())] == ["T2", "T5-coverage"]
    metrics = sorted(p.relative_to(one) for p in (one / "runs").rglob("metrics.csv"))
    assert metrics == sorted(p.relative_to(three) for p in (three / "runs").rglob("metrics.csv"))
    assert len(metrics) == 6 * 2 + 2 * 3 * 2  # T2: 6 jobs, T5-coverage: 2 x 3, 2 seeds each
    for path in metrics:  # every number but the timings, to the last digit
        a, b = (pd.read_csv(d / path, dtype=str).filter(regex="^(?!time/)") for d in (one, three))
        pd.testing.assert_frame_equal(a, b, obj=str(path))
    report = (three / "REPORT.md").read_text().split("\n", 3)[3]  # below the line with the wall time
    assert report == (one / "REPORT.md").read_text().split("\n", 3)[3]


def test_sweeps_run_one_per_cpu_only_where_each_job_runs_on_one_thread(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    assert default_jobs("bandit", []) == 6  # threads: 1
    assert default_jobs("bandit", ["threads=4"]) == 1
    assert default_jobs("full_scale", []) == 1  # torch's default threads: the machine is one job's
    assert default_jobs("full_scale", ["threads=1"]) == 6


def test_jobs_below_one_is_refused_in_one_line_before_writing(tmp_path):
    proc = run_cli(["--jobs", "0", "--out", "rep"], tmp_path, module="alignlab.science.report", check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("alignlab-report: error: --jobs 0: at least one sweep") and "Fix:" in proc.stderr
    assert not (tmp_path / "rep").exists()
