"""Issue 15: where a time budget sets fewer seeds than tier 1's 10, the report and the docs' tables say so next to
each verdict (conf/task/<task>.yaml: findings.seeds and findings.seeds_note)."""

from __future__ import annotations

import html
from pathlib import Path

import yaml
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from alignlab.science.findings import FINDINGS, Verdict
from alignlab.science.report import budget_note, plan, record, sweep_order, sweep_steps, verdicts_markdown, write_report
from alignlab.science.sweep import config_difference, flatten
from alignlab.stats import Check

# conf/task/bandit_contextual.yaml's findings.seeds_note
NOTE = "3 seeds, not 10: the report's budget is 10 minutes on 2 cores (issue 15), and 3 seeds take about that"


def verdict(seeds: int) -> Verdict:
    check = Check("dpo: online - offline", 0.3, 0.2, 0.4, seeds, "at least", 0.1, "holds", part="hard")
    return Verdict("holds", {}, "dpo: online - offline 0.300 [0.200, 0.400].", (check,))


def test_the_contextual_bandit_runs_its_budgeted_seeds():
    GlobalHydra.instance().clear()
    with initialize_config_module("alignlab.conf", version_base="1.3"):
        cfg = compose("config", overrides=["experiment=online_vs_offline", "task=bandit_contextual"])
    GlobalHydra.instance().clear()
    assert cfg.num_seeds == cfg.findings.seeds == 3
    assert cfg.findings.seeds_note == NOTE


def test_the_verdict_tables_mark_a_budgeted_seed_count_and_say_why():
    records = [record(FINDINGS["T1"], verdict(seeds), task, []) for task, seeds in
               (("bandit", 10), ("bandit_contextual", 3), ("synthetic_llm", 5))]  # fmt: skip
    table = verdicts_markdown(records)
    row = next(line for line in table.splitlines() if line.startswith("| T1 |"))
    assert row == "| T1 | **holds**, 10 seeds | **holds**, 3 seeds (budget) | **holds**, 5 seeds |"
    assert f"- task=bandit_contextual: {NOTE}." in table.splitlines()
    assert "task=synthetic_llm:" not in table  # 5 seeds is not its budget's 2: no budget to explain
    assert budget_note("bandit", {10}) is None and budget_note("bandit_contextual", {3, 10}) is None


def test_the_report_says_the_budget_next_to_the_verdict(tmp_path):
    for seeds, out in ((3, tmp_path / "budget"), (4, tmp_path / "more")):
        result = {"finding": FINDINGS["T1"], "verdict": verdict(seeds), "judged": True, "figures": [], "error": None,
                  "refused": [], "overrides": [], "command": ["alignlab", "-m"]}  # fmt: skip
        out.mkdir()
        write_report(out, "bandit_contextual", [result], [], 1.0)
    lines = (tmp_path / "budget" / "REPORT.md").read_text().splitlines()
    row = next(line for line in lines if line.startswith("| T1 "))
    assert "| **holds** (3 seeds, not 10: budget) |" in row
    verdict_line = next(i for i, line in enumerate(lines) if line.startswith("- Verdict: **holds**"))
    assert lines[verdict_line + 1] == f"- Seeds: {NOTE}."
    assert f"Seeds: {html.escape(NOTE)}." in (tmp_path / "budget" / "index.html").read_text()
    assert "Seeds:" not in (tmp_path / "more" / "REPORT.md").read_text()  # 4 seeds: not the budget's count


def test_a_run_made_before_the_seeds_note_is_not_refused(tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    made = {"seed": 0, "findings": {"seeds": 3, "reuse_iterations": 100}, "train": {"lr": 0.001}}
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(made))
    wanted = flatten(
        OmegaConf.to_container(OmegaConf.create(made)) | {"findings": made["findings"] | {"seeds_note": NOTE}}
    )
    assert config_difference(Path(run), wanted) == []
    wanted["train.lr"] = "0.01"
    assert config_difference(Path(run), wanted) == ["train.lr"]


def test_the_report_starts_the_sweep_with_the_most_gradient_steps_first():
    runnable, _ = plan("bandit_contextual", None)
    order = sweep_order(runnable, "bandit_contextual", [])
    steps = {f.experiment: sweep_steps(f, "bandit_contextual", []) for f in order}
    # T4: 3 seeds x 2 objectives x 5 round sizes B x (2400 / B rounds x B / 2 minibatches x 15 passes)
    assert steps["batch_size"] == 3 * 2 * 5 * 18_000
    assert steps["sample_reuse"] == 3 * 3 * 100 * (1 + 2 + 4 + 8 + 16 + 32)  # T3: T steps a round, swept
    assert steps["online_vs_offline"] == 3 * 16 * 100 * 15
    assert [f.experiment for f in order][:2] == ["batch_size", "online_vs_offline"]
    assert len(order) == len({f.experiment for f in runnable})  # a sweep two findings share runs once
    assert sweep_steps(FINDINGS["T4"], "bandit_contextual", ["findings.seeds=1", "findings.prompt_budget=320"]) == (
        1 * 2 * 5 * (320 // 2 * 15)
    )
