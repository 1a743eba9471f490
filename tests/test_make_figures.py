"""figures/make_figures.sh regenerates figures/ and the docs' verdicts of the tasks it is given (issue 15), with
alignlab, alignlab-plot and alignlab-report replaced by stubs that write what each would (the real reports take
from 5 to 30 minutes: the lead runs them)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STUB_ALIGNLAB = """#!/usr/bin/env bash
for a in "$@"; do
  case "$a" in hydra.run.dir=*) d=${a#hydra.run.dir=}; mkdir -p "$d"; echo "$*" > "$d/figure.png";; esac
done
"""
STUB_PLOT = """#!/usr/bin/env bash
while [ $# -gt 0 ]; do [ "$1" = --out ] && echo animation > "$2"; shift; done
"""
STUB_REPORT = """#!/usr/bin/env bash
echo "$*" >> calls.log
if [ "$1" = --verdicts ]; then ls "$2" > "$4"; exit 0; fi
task=${1#task=}; out=$3
mkdir -p "$out/figures/online_vs_offline"
echo "$task" > "$out/figures/online_vs_offline/reward_vs_iteration.png"
echo "$task" > "$out/figures/online_vs_offline/final.csv"
echo "[{\\"task\\": \\"$task\\"}]" > "$out/verdicts.json"
"""


def make_repo(tmp_path: Path) -> tuple[Path, dict]:
    repo = tmp_path / "repo"
    (repo / "figures").mkdir(parents=True)
    shutil.copy(ROOT / "figures" / "make_figures.sh", repo / "figures")
    env = {"PATH": "/usr/bin:/bin"}
    for name, text in (("ALIGNLAB", STUB_ALIGNLAB), ("PLOT", STUB_PLOT), ("REPORT", STUB_REPORT)):
        stub = tmp_path / name.lower()
        stub.write_text(text)
        stub.chmod(0o755)
        env[name] = str(stub)
    return repo, env


def make_figures(repo: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    script = ["bash", "figures/make_figures.sh", *args]
    return subprocess.run(script, cwd=repo, env=env, capture_output=True, text=True, timeout=120)


def test_the_default_is_tier_1_and_its_figures_keep_their_names(tmp_path):
    repo, env = make_repo(tmp_path)
    proc = make_figures(repo, env)
    assert proc.returncode == 0, proc.stderr
    for name in ("default_run.png", "animation_online_dpo_r1.gif", "bandit_tajwar100_run.png"):
        assert (repo / "figures" / name).is_file()
    assert (repo / "figures" / "online_vs_offline_reward_vs_iteration.png").read_text() == "bandit\n"
    assert (repo / "figures" / "online_vs_offline_final.csv").is_file()
    assert json.loads((repo / "docs" / "verdicts" / "bandit.json").read_text()) == [{"task": "bandit"}]
    calls = (repo / "calls.log").read_text().splitlines()
    assert calls == ["task=bandit --out report", "--verdicts docs/verdicts --into docs/verdicts.md"]


def test_the_other_tiers_are_opt_in_each_in_its_own_folders(tmp_path):
    repo, env = make_repo(tmp_path)
    proc = make_figures(repo, env, "bandit_contextual", "synthetic_llm", "--", "--jobs", "1")
    assert proc.returncode == 0, proc.stderr
    assert not (repo / "figures" / "default_run.png").exists()  # tier 1 was not asked for
    for task in ("bandit_contextual", "synthetic_llm"):
        assert (repo / "figures" / task / "online_vs_offline_reward_vs_iteration.png").read_text() == f"{task}\n"
        assert json.loads((repo / "docs" / "verdicts" / f"{task}.json").read_text()) == [{"task": task}]
    calls = (repo / "calls.log").read_text().splitlines()
    assert calls[:2] == [
        "task=bandit_contextual --out report_bandit_contextual --jobs 1",
        "task=synthetic_llm --out report_synthetic_llm --jobs 1",
    ]
    # the tables are generated once, from every saved verdict
    assert (repo / "docs" / "verdicts.md").read_text().split() == ["bandit_contextual.json", "synthetic_llm.json"]


def test_an_unknown_task_stops_before_anything_runs(tmp_path):
    repo, env = make_repo(tmp_path)
    proc = make_figures(repo, env, "bandit", "full_scale")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "make_figures.sh: error: no figures for task 'full_scale'. "
        "Fix: give bandit, bandit_contextual or synthetic_llm."
    )
    assert not (repo / "calls.log").exists() and not (repo / "figures" / "default_run.png").exists()
