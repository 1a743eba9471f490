"""Reward roles, the findings experiments on every tier, minibatches, the verdicts and the report."""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from alignlab.core.objectives import DPO
from alignlab.core.roles import ROLES, required_roles, resolve_reward
from alignlab.core.sampling import SamplingConfig, minibatches_of
from alignlab.core.train import TrainConfig, train
from alignlab.core.types import Rollout
from alignlab.errors import ConfigError
from alignlab.runs.cli import build, run_experiment, run_name
from alignlab.science.criteria import CRITERIA, HISTORY, Part
from alignlab.science.findings import FINDINGS, Verdict, iterations_to_level
from alignlab.science.report import not_run, parse, plan, record, verdicts_block, verdicts_markdown
from alignlab.science.sweep import flatten, read_sweep
from alignlab.stats import combine, decide, difference, paired_interval, seeds_to_decide
from bandits import BanditTask
from tests.conftest import run_cli

CONF = importlib.resources.files("alignlab.conf")


def options(group: str) -> list[str]:
    return sorted(p.name[:-5] for p in (CONF / group).iterdir() if p.name.endswith(".yaml"))


# Experiments that are tools, not findings (tested in their own files): tune searches settings (tests/test_tune.py).
TOOL_EXPERIMENTS = ("tune",)


def experiments_on(task: str | None = None) -> list[str]:
    """The findings experiments (every experiment but the tools), those that `task` has the roles of if given."""
    names = [n for n in options("experiment") if n not in TOOL_EXPERIMENTS]
    return [n for n in names if task is None or required_roles(experiment(n)) <= set(roles_of(task))]


def roles_of(task: str) -> dict:
    return dict(OmegaConf.load(str(CONF / "task" / f"{task}.yaml")).task.roles)


def experiment(name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(str(CONF / "experiment" / f"{name}.yaml")))


# ---- roles -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "task, reward, name",
    [
        ("bandit", "hard", "r1"),
        ("bandit", "easy", "r2"),
        ("bandit", "r2", "r2"),
        ("bandit_tajwar100", "hard", "r1"),
        ("synthetic_llm", "hard", "min_length"),
        ("synthetic_llm", "easy", "mean_length"),
        ("synthetic_llm", "verifiable", "arithmetic"),
        ("full_scale", "hard", "length"),
        ("full_scale", "easy", "long_length"),
        ("full_scale", "verifiable", "arithmetic"),
    ],
)
def test_a_role_resolves_to_the_tasks_reward(task, reward, name):
    cfg = {"name": task, "reward": reward, "roles": roles_of(task)}
    resolved = resolve_reward(cfg)
    assert resolved["reward"] == name and "roles" not in resolved
    assert cfg["reward"] == reward, "the caller's config is not changed"


@pytest.mark.parametrize(
    "task, reward", [("bandit", "verifiable"), ("full_scale_mistral7b", "easy"), ("bandit", "nonverifiable")]
)
def test_a_missing_role_is_one_line_that_lists_the_roles(task, reward):
    with pytest.raises(ConfigError) as error:
        resolve_reward({"name": task, "reward": reward, "roles": roles_of(task)})
    message = str(error.value)
    assert "\n" not in message and f"no '{reward}' reward" in message and "Fix:" in message
    for role in roles_of(task):
        assert role in message


def test_every_task_names_its_rewards_by_role():
    for task in options("task"):
        roles = roles_of(task)
        assert "hard" in roles and set(roles) <= set(ROLES), task


def test_the_cli_stops_on_a_missing_role_before_training(tmp_path):
    proc = run_cli(["task.reward=verifiable", "plot=false"], tmp_path, check=False)
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert "task=bandit has no 'verifiable' reward (its roles: hard (r1), easy (r2))" in line
    assert not list(tmp_path.rglob("metrics.csv"))


# ---- experiments: roles, headers, every task that has the roles ---------------------------------------------
FINDING_EXPERIMENTS = sorted({f.experiment for f in FINDINGS.values()})


@pytest.mark.parametrize("name", experiments_on())
def test_an_experiment_asks_for_roles_and_cites_its_paper(name):
    text = (CONF / "experiment" / f"{name}.yaml").read_text()
    cfg = experiment(name)
    assert "arXiv:" in text and "alignlab -m experiment=" + name in text
    for reward in ("r1", "r2", "min_length", "mean_length"):
        assert f"reward: {reward}" not in text and f"task.reward: {reward}" not in text, "ask for a role"
    assert "iterations: 3" not in text and "lr:" not in text, "budgets belong to the task"
    if name in FINDING_EXPERIMENTS:
        assert "Claim:" in text and "Paper:" in text
        assert cfg["num_seeds"] == "${findings.seeds}"
        assert required_roles(cfg) <= set(ROLES) and required_roles(cfg)


def experiment_task_pairs():
    for name in experiments_on():
        for task in options("task"):
            if required_roles(experiment(name)) <= set(roles_of(task)):
                yield name, task


@pytest.mark.parametrize("name, task", list(experiment_task_pairs()))
def test_every_experiment_composes_with_every_task_that_has_its_roles(hydra_ctx, name, task):
    params = experiment(name)["hydra"]["sweeper"]["params"]
    for values in _value_combinations(params):
        cfg = compose("config", overrides=[f"experiment={name}", f"task={task}", *values])
        task_cfg = resolve_reward(OmegaConf.to_container(cfg.task, resolve=True))
        assert task_cfg["reward"] in set(roles_of(task).values())
        SamplingConfig(**OmegaConf.to_container(cfg.sampling, resolve=True)).check()
        TrainConfig(**OmegaConf.to_container(cfg.train, resolve=True)).check()
        assert cfg.num_seeds == cfg.findings.seeds or name == "tajwar_bandit_grid"


def _value_combinations(params: dict) -> list[list[str]]:
    """The first and the last value of every swept key (the sweep's corners, cheaply)."""
    first = [f"{k}={str(v).split(',')[0].strip()}" for k, v in params.items()]
    last = [f"{k}={str(v).split(',')[-1].strip()}" for k, v in params.items()]
    return [first, last]


def test_an_experiment_needs_the_roles_it_sweeps():
    assert required_roles(experiment("online_vs_offline")) == {"hard", "easy"}
    assert required_roles(experiment("kl_budget")) == {"hard"}
    pairs = set(experiment_task_pairs())
    assert ("online_vs_offline", "bandit") in pairs and ("online_vs_offline", "synthetic_llm") in pairs
    assert ("online_vs_offline", "full_scale") in pairs  # easy: long_length, SmolLM2's mode at the cap
    assert ("online_vs_offline", "full_scale_mistral7b") not in pairs  # no easy reward measured for Mistral-7B


def test_an_experiment_needs_the_roles_of_its_reward_mixtures():
    # T7 asks for task.reward=verifiable and sweeps conf/mix/ presets that also train on the nonverifiable role
    assert required_roles(experiment("t7_reward_curriculum")) == {"verifiable", "nonverifiable"}
    pairs = set(experiment_task_pairs())
    assert ("t7_reward_curriculum", "synthetic_llm") in pairs
    assert ("t7_reward_curriculum", "full_scale") not in pairs  # full_scale has verifiable, not nonverifiable
    inline = {"task": {"reward": "hard"}, "reward_mix": {"domains": {"math": {"verifiable": 1, "r1": 1}}}}
    assert required_roles(inline) == {"hard", "verifiable"}  # reward names (r1) are not roles
    chosen = {"defaults": [{"override /mix": "nv_then_v"}], "task": {"reward": "easy"}}
    chosen_mix = {"verifiable", "nonverifiable"}
    assert required_roles(chosen) == {"easy", *chosen_mix}
    # a finding's own overrides count; a component of weight 0 is still evaluated, so its role is needed too
    assert required_roles({"task": {"reward": "hard"}}, ("mix=nonverifiable",)) == {"hard", *chosen_mix}


def test_the_report_skips_a_finding_whose_mixture_needs_a_role_the_task_lacks():
    runnable, skipped = plan("full_scale", ["T1", "T7-curriculum"])
    assert [f.id for f in runnable] == ["T1"] and [f.id for f, _ in skipped] == ["T7-curriculum"]
    assert skipped[0][1] == "task=full_scale has no nonverifiable reward role"
    runnable, skipped = plan("synthetic_llm", ["T7-curriculum"])
    assert [f.id for f in runnable] == ["T7-curriculum"] and skipped == []


def run_corner(name: str, task: str, tmp_path, extra: list[str]) -> dict:
    """One job of the experiment (the last value of every swept key), through the CLI's run_experiment."""
    params = experiment(name)["hydra"]["sweeper"]["params"]
    GlobalHydra.instance().clear()
    with initialize_config_module("alignlab.conf", version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[f"experiment={name}", f"task={task}", *_value_combinations(params)[1], "num_seeds=1", *extra],
        )
    GlobalHydra.instance().clear()
    return run_experiment(cfg, tmp_path / name)


@pytest.mark.parametrize("name", experiments_on("bandit"))
def test_every_experiment_runs_on_tier_1(name, tmp_path):
    summary = run_corner(name, "bandit", tmp_path, ["train.iterations=2", "findings.prompt_budget=64"])
    assert 0.0 <= summary["reward"] <= 1.0 and summary["iterations"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("name", experiments_on("synthetic_llm"))
def test_every_experiment_runs_on_tier_2(name, tmp_path, tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "alignlab_cache_findings"
    tiny = ["train.iterations=2", "train.eval_every=2", "task.eval_prompts=2", "task.eval_samples_per_prompt=2"]
    tiny += ["sampling.offline_prompts=8", f"task.cache_dir={cache}", "findings.prompt_budget=64"]
    torch.set_num_threads(1)
    summary = run_corner(name, "synthetic_llm", tmp_path, tiny)
    assert 0.0 <= summary["reward"] <= 1.0 and math.isfinite(summary["kl_ref"])


# ---- minibatches (T4) and the evaluation at iteration 0 ----------------------------------------------------
def test_minibatches_split_a_round_by_prompt_groups_in_order():
    rollout = Rollout(list(range(12)), torch.arange(12), torch.arange(12.0), samples_per_prompt=2)
    parts = minibatches_of(rollout, SamplingConfig(prompts_per_round=6, samples_per_prompt=2, minibatch_prompts=2))
    assert [p.completions.tolist() for p in parts] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert all(p.samples_per_prompt == 2 for p in parts)
    whole = minibatches_of(rollout, SamplingConfig(prompts_per_round=6, samples_per_prompt=2))
    assert whole == [rollout]


@pytest.mark.parametrize("prompts, minibatch, reuse", [(8, None, 1), (8, 2, 1), (8, 4, 3), (4, 1, 2)])
def test_a_round_takes_b_over_m_steps_per_pass(prompts, minibatch, reuse):
    sampling = SamplingConfig(prompts_per_round=prompts, minibatch_prompts=minibatch, updates_per_batch=reuse)
    evaluation, rows, _ = train(BanditTask(), DPO(), sampling, TrainConfig(iterations=3, progress=False))
    steps = (1 if minibatch is None else prompts // minibatch) * reuse
    assert [r["train/updates"] for r in rows] == [0.0] + [steps * i for i in (1, 2, 3)]


def test_every_run_is_evaluated_at_iteration_0_where_it_is_the_reference():
    task = BanditTask()
    _, rows, _ = train(task, DPO(), SamplingConfig(), TrainConfig(iterations=2, progress=False))
    assert rows[0]["iteration"] == 0 and rows[0]["eval/kl_ref"] == pytest.approx(0.0, abs=1e-9)
    expected = float((task.ref_probs * task.reward_fn.table.double()).sum())
    assert rows[0]["eval/reward"] == pytest.approx(expected)
    assert [r["iteration"] for r in rows] == [0, 1, 2]


# ---- run directory names -----------------------------------------------------------------------------------
def test_a_long_run_name_is_shortened_with_a_hash_and_stays_distinct():
    short = "algo=dpo,sampling=online"
    assert run_name(short) == short and run_name("") == "default" and run_name("a/b=1") == "a_b=1"
    long_a = ",".join(f"key{i}=value{i}" for i in range(40))
    long_b = long_a + ",x=1"
    assert len(run_name(long_a).encode()) <= 200 and run_name(long_a) == run_name(long_a)
    assert run_name(long_a) != run_name(long_b) and run_name(long_a).startswith(long_a[:100])


def test_a_sweep_with_many_overrides_does_not_fail_on_its_directory_name(tmp_path):
    many = [f"sampling.updates_per_batch={1}", "algo.beta=0.1", "algo.label_smoothing=0.0", "algo.min_reward_gap=0.0"]
    many += [f"task.{k}={v}" for k, v in (("skew", 0.6), ("width", 1.5), ("r1_peak", 7), ("r2_peak", 0))]
    many += ["train.max_grad_norm=1.0", "train.lr=0.05", "sampling.offline_prompts=32", "sampling.offline_fraction=0.0"]
    many += ["task.behaviour=reference", "task.reference=skewed", "sampling.samples_per_prompt=4", "seed=0"]
    proc = run_cli(["-m", "algo=dpo", *many, "train.iterations=2", "plot=false", "hydra.sweep.dir=s"], tmp_path)
    assert proc.returncode == 0 and len(list((tmp_path / "s").rglob("summary.json"))) == 1


# ---- statistics over seeds --------------------------------------------------------------------------------
def test_a_paired_interval_is_seeded_and_pairs_by_seed():
    a = pd.Series([1.0, 1.2, 0.9, 1.1, 1.0], index=[0, 1, 2, 3, 4])
    b = pd.Series([0.5, 0.6, 0.7, 0.4, 0.5, 9.0], index=[0, 1, 2, 3, 4, 5])  # seed 5 has no partner: left out
    first = paired_interval({"a": a, "b": b}, difference("a", "b"))
    assert first == paired_interval({"a": a, "b": b}, difference("a", "b"))  # same data, same interval
    effect, low, high, seeds = first
    assert seeds == 5 and effect == pytest.approx(0.5) and low < effect < high
    shifted = paired_interval({"a": a + 0.3, "b": b + 0.3}, difference("a", "b"))  # a shared seed effect cancels
    assert shifted[1:] == pytest.approx(first[1:])
    assert (
        paired_interval({"a": a}, lambda m: m["a"])[3] == 5 and paired_interval({"a": a[:0]}, lambda m: m["a"])[3] == 0
    )


@pytest.mark.parametrize(
    "direction, size, low, high, status",
    [
        ("at least", 0.2, 0.3, 0.6, "holds"),
        ("at least", 0.2, 0.0, 0.1, "does not hold"),
        ("at least", 0.2, 0.1, 0.4, "inconclusive"),
        ("at most", 0.1, -0.1, 0.05, "holds"),
        ("at most", 0.1, 0.15, 0.3, "does not hold"),
        ("within", 0.1, -0.05, 0.08, "holds"),
        ("within", 0.1, 0.12, 0.3, "does not hold"),
        ("within", 0.1, -0.2, 0.05, "inconclusive"),
    ],
)
def test_a_part_decides_by_where_its_interval_lies(direction, size, low, high, status):
    assert decide((low + high) / 2, low, high, direction, size) == status


def test_an_inconclusive_part_says_how_many_seeds_would_decide_it():
    # half-width 0.1 at 4 seeds, 0.05 from the bar: (0.1 / 0.05)^2 x 4 = 16 seeds, 12 more
    assert seeds_to_decide(0.25, 0.15, 0.35, 4, "at least", 0.2) == 12
    assert seeds_to_decide(0.2, 0.1, 0.3, 4, "at least", 0.2) is None  # on the bar: no number of seeds decides it


@pytest.mark.parametrize(
    "statuses, rule, status",
    [
        (["holds", "holds"], "all", "holds"),
        (["holds", "does not hold"], "all", "does not hold"),
        (["holds", "inconclusive"], "all", "inconclusive"),
        (["does not hold", "inconclusive"], "any", "inconclusive"),
        (["does not hold", "holds"], "any", "holds"),
    ],
)
def test_parts_combine_by_the_stated_rule(statuses, rule, status):
    assert combine(statuses, rule) == status


# ---- criteria and their history ----------------------------------------------------------------------------
def test_every_criterion_has_a_history_that_ends_at_its_definition():
    assert set(CRITERIA) == set(FINDINGS)
    for name, criterion in CRITERIA.items():
        changes = HISTORY[name]
        assert changes and all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", c.date) and len(c.reason) > 20 for c in changes)
        assert [c.date for c in changes] == sorted(c.date for c in changes), name
        assert changes[-1].digest == criterion.digest(), (
            f"{name}'s criterion changed without a history entry: add a Change (date, reason) to HISTORY['{name}'] "
            f"in alignlab/science/criteria.py with digest {criterion.digest()!r}"
        )


def test_a_changed_bar_changes_the_digest():
    criterion = CRITERIA["T1"]
    moved = dataclasses.replace(criterion, parts={**criterion.parts, "hard": Part("x", "at least", 0.19)})
    assert moved.digest() != criterion.digest()


def test_t3_is_the_papers_comparison_against_t_equal_1_with_both_halves():
    parts = CRITERIA["T3"].parts
    assert set(parts) == {"ppo", "best_of_n", "dpo"} and all("T = 1" in p.effect for p in parts.values())
    last = HISTORY["T3"][-1]
    assert last.date == "2026-12-03" and "undone" in last.reason and "after seeing the data" in last.reason


def test_every_finding_names_its_papers_setting_and_extensions_say_so():
    for finding in FINDINGS.values():
        assert "arXiv:" in finding.paper and finding.setting and finding.claim
        assert (CONF / "experiment" / f"{finding.experiment}.yaml").is_file()
        if finding.extension_of:
            assert finding.extension_of in FINDINGS and "not the paper" in finding.setting
    assert "bandit_experiment/scripts/best_of_n.sh" in FINDINGS["T2"].setting
    assert experiment("negative_gradient")["task"]["reward"] == "easy"
    assert experiment("negative_gradient")["defaults"] == [{"override /sampling": "offline"}]
    assert FINDINGS["T2-online-hard"].extension_of == "T2" and FINDINGS["T6-hard"].extension_of == "T6"
    assert experiment("semi_online_verifiable")["task"]["reward"] == "verifiable"


# ---- verdicts on constructed tables: every finding can hold, not hold, or stay undecided -------------------
SEEDS = range(10)
NOISE = [0.01 * ((7 * s) % 5 - 2) for s in SEEDS]  # -0.02 .. 0.02, fixed


def rows_of(settings: dict[tuple, float], keys: tuple[str, ...], noise=NOISE, column="reward") -> pd.DataFrame:
    """One row per setting and seed: the setting's value plus a fixed per-seed noise."""
    return pd.DataFrame(
        [dict(zip(keys, setting, strict=True)) | {"seed": s, column: v + noise[s]} for setting, v in settings.items()
         for s in SEEDS]
    )  # fmt: skip


@pytest.mark.parametrize(
    "hard_gap, easy_gap, status",
    [(0.5, 0.0, "holds"), (0.1, 0.0, "does not hold"), (0.5, 0.3, "does not hold"), (0.2, 0.0, "inconclusive")],
)
def test_t1_verdict(hard_gap, easy_gap, status):
    settings = {}
    for algo in ("dpo", "ipo"):
        for reward, gap in (("hard", hard_gap), ("easy", easy_gap)):
            settings[algo, reward, "offline"] = 0.1
            settings[algo, reward, "online"] = 0.1 + gap
    noise = {k: v for k, v in enumerate(NOISE)}
    summaries = rows_of(settings, ("algo", "task.reward", "sampling"))
    online = summaries["sampling"] == "online"
    summaries.loc[online, "reward"] += summaries.loc[online, "seed"].map(noise)  # the gap varies over seeds
    verdict = FINDINGS["T1"].verdict(summaries, pd.DataFrame())
    assert verdict.status == status and set(verdict.per) == {"dpo", "ipo"}
    hard = next(c for c in verdict.checks if c.name == "dpo on hard")
    assert hard.effect == pytest.approx(hard_gap) and hard.seeds == 10 and hard.low < hard_gap < hard.high


def test_iterations_to_level_counts_the_first_evaluation_past_the_level_or_the_length_plus_one():
    metrics = pd.DataFrame(
        {
            "run": ["a"] * 4 + ["b"] * 4,
            "iteration": [0, 1, 2, 3] * 2,
            "eval/reward": [0.0, 0.5, 0.95, 0.99, 0.0, 0.1, 0.2, 0.3],
        }
    )
    hits = iterations_to_level(metrics, level=0.9)
    assert hits["a"] == 2 and hits["b"] == 4


def curves(algo: str, speed: float, wobble: float = 0.0) -> list[dict]:
    """Reward curves min(1, speed x i) of one algorithm over the seeds, the speed varied per seed by `wobble`."""
    return [
        {"run": f"{algo}-{s}", "algo": algo, "sampling": "offline", "seed": s, "iteration": i}
        | {"eval/reward": min(1.0, speed * (1 + wobble * ((2 * s) % 5 - 2)) * i)}
        for s in SEEDS
        for i in range(0, 41)
    ]


@pytest.mark.parametrize("finding", ["T2", "T2-online-hard"])
@pytest.mark.parametrize("negative_speed, status", [(0.2, "holds"), (0.05, "does not hold"), (0.11, "inconclusive")])
def test_t2_verdict(finding, negative_speed, status):
    rows = []
    for algo in ("best_of_n", "sft"):
        rows += curves(algo, 0.1)
    for algo in ("best_of_n_neg_worst", "best_of_n_neg_worse", "dpo"):
        rows += curves(algo, negative_speed, wobble=0.1)
    metrics = pd.DataFrame(rows)
    summaries = metrics[metrics.iteration == 40].rename(columns={"eval/reward": "reward"})
    verdict = FINDINGS[finding].verdict(summaries, metrics)
    assert verdict.status == status and len(verdict.per) == 3


@pytest.mark.parametrize(
    "ppo_high, bon_high, dpo_high, status",
    [
        (0.99, 0.5, 0.5, "holds"),
        (0.5, 0.5, 0.5, "does not hold"),  # reuse costs PPO
        (0.99, 0.99, 0.5, "does not hold"),  # Best-of-N does not overfit
        (0.99, 0.5, 0.99, "does not hold"),  # DPO does not: scored, not only reported
        (0.99, 0.5, 0.9, "inconclusive"),
    ],
)
def test_t3_verdict(ppo_high, bon_high, dpo_high, status):
    settings = {}
    for algo, high in (("ppo", ppo_high), ("best_of_n", bon_high), ("dpo", dpo_high)):
        settings[algo, "1"], settings[algo, "32"] = 0.99, high
    summaries = rows_of(settings, ("algo", "sampling.updates_per_batch"))
    reused = summaries["sampling.updates_per_batch"] == "32"
    summaries.loc[reused, "reward"] += [0.02 * ((3 * s) % 5 - 2) for s in summaries.loc[reused, "seed"]]
    verdict = FINDINGS["T3"].verdict(summaries, pd.DataFrame())
    assert verdict.status == status and set(verdict.per) == {"ppo", "best_of_n", "dpo"}


@pytest.mark.parametrize("small_area, status", [(0.6, "holds"), (0.4, "does not hold"), (0.45, "inconclusive")])
def test_t4_verdict(small_area, status):
    rows = []
    for b, area in ((2, small_area), (32, 0.4)):
        for s in SEEDS:
            value = area + 0.02 * ((3 * s) % 5 - 2) * (b == 2)
            rows += [{"run": f"{b}-{s}", "algo": "dpo", "sampling.prompts_per_round": b, "seed": s, "iteration": i,
                      "eval/reward": value} for i in range(3)]  # fmt: skip
    metrics = pd.DataFrame(rows)
    assert FINDINGS["T4"].verdict(metrics[metrics.iteration == 2], metrics).status == status


@pytest.mark.parametrize("online_best, status", [(0.9, "holds"), (0.3, "does not hold"), (0.55, "inconclusive")])
def test_t5_verdict_reads_the_frontier_over_every_evaluation(online_best, status):
    rows = []
    for seed in SEEDS:
        wobble = 0.02 * ((3 * seed) % 5 - 2)
        rows.append({"sampling": "online", "seed": seed, "eval/kl_ref": 0.2, "eval/reward": online_best + wobble})
        rows.append({"sampling": "online", "seed": seed, "eval/kl_ref": 20.0, "eval/reward": 1.0})  # off budget
        rows.append({"sampling": "offline", "seed": seed, "eval/kl_ref": 0.2, "eval/reward": 0.5})
    verdict = FINDINGS["T5"].verdict(pd.DataFrame(), pd.DataFrame(rows))
    assert verdict.status == status
    assert verdict.numbers["KL <= 0.5: best online reward (mean)"] == pytest.approx(online_best)


@pytest.mark.parametrize(
    "offline, semi, grpo, status",
    [
        (0.5, 0.9, 0.9, "holds"),
        (0.85, 0.9, 0.9, "does not hold"),  # offline not far behind
        (0.5, 0.7, 0.9, "does not hold"),  # semi-online far behind online
        (0.5, 0.9, 0.6, "does not hold"),  # GRPO far from DPO
        (0.5, 0.85, 0.9, "inconclusive"),
    ],
)
@pytest.mark.parametrize("finding", ["T6", "T6-hard"])
def test_t6_verdict_can_come_out_every_way(finding, offline, semi, grpo, status):
    settings = {("dpo", "1"): 0.9, ("dpo", "4"): semi, ("dpo", "16"): semi, ("dpo", "null"): offline}
    settings["grpo", "1"] = grpo
    summaries = rows_of(settings, ("algo", "sampling.sync_every"))
    online = (summaries["sampling.sync_every"] == "1") & (summaries["algo"] == "dpo")
    summaries.loc[online, "reward"] += [0.02 * ((3 * s) % 5 - 2) for s in summaries.loc[online, "seed"]]
    verdict = FINDINGS[finding].verdict(summaries, pd.DataFrame())
    assert verdict.status == status


def test_t6_names_a_sync_period_that_never_refreshes_in_the_budget_and_scores_the_others():
    # Tier 3's budget: 8 iterations, so s = 16 would be offline DPO; its sweep runs s = 1, 4 and offline only.
    settings = {("dpo", "1"): 0.9, ("dpo", "4"): 0.9, ("dpo", "null"): 0.5, ("grpo", "1"): 0.9}
    summaries = rows_of(settings, ("algo", "sampling.sync_every")).assign(iterations=8)
    online = (summaries["sampling.sync_every"] == "1") & (summaries["algo"] == "dpo")
    summaries.loc[online, "reward"] += [0.02 * ((3 * s) % 5 - 2) for s in summaries.loc[online, "seed"]]
    verdict = FINDINGS["T6"].verdict(summaries, pd.DataFrame())
    assert verdict.status == "holds"
    assert [c.name for c in verdict.checks if c.part == "semi"] == ["online - s=4 DPO"]
    assert "dpo s=16: not semi-online in 8 iterations (never refreshed), not scored" in verdict.numbers
    # With a longer budget s = 16 is semi-online and must be in the sweep.
    longer = FINDINGS["T6"].verdict(summaries.assign(iterations=100), pd.DataFrame())
    assert longer.status == "inconclusive" and "online - s=16 DPO nan" in longer.text


def test_t2_is_inconclusive_where_neither_objective_reaches_the_level():
    rows = []
    for algo in ("best_of_n", "sft", "best_of_n_neg_worst", "best_of_n_neg_worse", "dpo"):
        rows += curves(algo, 0.01)  # reward 0.4 at iteration 40: nobody reaches 90% of the way to 1
    metrics = pd.DataFrame(rows)
    verdict = FINDINGS["T2"].verdict(
        metrics[metrics.iteration == 40].rename(columns={"eval/reward": "reward"}), metrics
    )
    assert verdict.status == "inconclusive" and all(c.undecidable for c in verdict.checks)
    assert "inconclusive" in verdicts_markdown([record(FINDINGS["T2"], verdict, "bandit", [])]).split("\n")[2]


@pytest.mark.parametrize(
    "argv",
    [
        ["task=full_scale", "findings.seeds=3", "--only", "T6", "--judge-only"],
        ["task=full_scale", "--only", "T6", "findings.seeds=3", "--judge-only"],  # overrides after an option
        ["--only", "T6", "--judge-only", "task=full_scale", "findings.seeds=3"],
    ],
)
def test_the_report_takes_overrides_before_between_and_after_its_options(argv):
    args = parse(argv)
    assert (args.task, args.overrides, args.only, args.judge_only) == ("full_scale", ["findings.seeds=3"], "T6", True)


def test_a_verdict_has_one_of_three_statuses():
    with pytest.raises(ValueError):
        Verdict("maybe", {}, "")


# ---- the report reads exactly the runs of its experiment, finished and whole ------------------------------
GOOD_CONFIG = {"algo": {"name": "dpo"}, "train": {"iterations": 3}, "seed": 0}
GOOD_METRICS = "iteration,eval/reward\n0,0.1\n1,0.5\n"


def fake_job(root, name: str, summary=..., metrics=GOOD_METRICS, config=None) -> None:
    """A run directory as the CLI writes one; `summary` None leaves summary.json out (an unfinished run)."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("- algo=dpo\n- seed=0\n")
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config or GOOD_CONFIG))
    (run / "metrics.csv").write_bytes(metrics if isinstance(metrics, bytes) else metrics.encode())
    if summary is ...:
        summary = {"reward": 0.5, "seed": 0}
    if summary is not None:
        (run / "summary.json").write_text(summary if isinstance(summary, str) else json.dumps(summary))


# issue 15/19: report and plots. What alignlab-report leaves out of a verdict: a row each, the bad run's
# files, and the words its one line must hold (it also names the run and a fix).
REPORT_BAD_INPUT = [
    ({"summary": None}, "unfinished (no summary.json). Fix: run alignlab-report again"),
    ({"summary": {"seed": 0}}, "its summary.json lacks the key 'reward'. Fix: re-run it"),
    ({"summary": '{"reward": NaN, "seed": 0}'}, "its summary.json has non-finite reward"),
    ({"summary": "{not json"}, "its summary.json does not parse"),
    ({"metrics": ""}, "its metrics.csv does not parse as CSV"),
    ({"metrics": "iteration,eval/reward\n"}, "its metrics.csv has no rows"),
    ({"metrics": bytes(range(256)) * 4}, "its metrics.csv does not parse as CSV"),
    ({"config": {**GOOD_CONFIG, "train": {"iterations": 50}}}, "another configuration than the experiment's "
     "(train.iterations differ). Fix: delete it"),
    # a role whose reward changed since the run, or that the task no longer has, could have been its reward
    ({"config": {**GOOD_CONFIG, "task": {"roles": {"hard": "length", "easy": "length"}}}}, "(task.roles.easy differ)"),
    ({"config": {**GOOD_CONFIG, "task": {"roles": {"hard": "length", "gone": "x"}}}}, "(task.roles.gone differ)"),
]  # fmt: skip

ROLES_NOW = {"task": {"roles": {"hard": "length", "easy": "long_length"}}}


def test_a_role_the_task_gained_after_a_run_does_not_refuse_it(tmp_path):
    """Tier 3 gained `easy` after its T6 runs (reward=verifiable) were made: a role the run's config does not
    name cannot have been its reward, so the run is judged as it is."""
    fake_job(tmp_path, "before", config={**GOOD_CONFIG, "task": {"roles": {"hard": "length"}}})
    sweep = read_sweep(tmp_path, expected=lambda overrides: flatten({**GOOD_CONFIG, **ROLES_NOW}))
    assert sweep.refused == [] and sweep.summaries["run"].tolist() == [str(tmp_path / "before")]


@pytest.mark.parametrize("bad, words", REPORT_BAD_INPUT)
def test_the_report_names_each_run_it_leaves_out_and_averages_only_the_others(tmp_path, bad, words):
    fake_job(tmp_path, "good")
    fake_job(tmp_path, "bad", **bad)
    wanted = {**GOOD_CONFIG, **ROLES_NOW} if "task" in bad.get("config", {}) else GOOD_CONFIG
    if wanted is not GOOD_CONFIG:
        (tmp_path / "good" / ".hydra" / "config.yaml").write_text(yaml.safe_dump(wanted))
    sweep = read_sweep(tmp_path, expected=lambda overrides: flatten(wanted))
    assert sweep.summaries["run"].tolist() == [str(tmp_path / "good")]
    assert set(sweep.metrics["run"]) == {str(tmp_path / "good")}
    (line,) = sweep.refused
    assert line.startswith(f"{tmp_path / 'bad'}: ") and words in line and "Fix:" in line and "\n" not in line


@pytest.mark.parametrize(
    "args, message",
    [
        (["task=bandits"], "unknown task 'bandits'"),
        (["task=full_scale_mistral7b", "--only", "T1"], "no finding runs on task=full_scale_mistral7b (its reward r"),
        (["--only", "T9"], "unknown finding T9"),
        (["task=full_scale", "--only", "T7-curriculum"], "no finding runs on task=full_scale (its reward roles"),
        (["--verdicts", "nowhere"], "no saved verdicts (*.json) in nowhere"),
    ],
)
def test_the_report_stops_on_bad_input_before_writing(tmp_path, args, message):
    proc = run_cli([*args, "--out", "rep"], tmp_path, module="alignlab.science.report", check=False)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "rep").exists()


def test_a_verdict_on_a_sweep_cut_down_names_what_was_not_run():
    """Tier 3's T1 fits a CPU budget with algo=dpo only: the verdict says so (issue 15), not silently judge the
    experiment's four objectives on one."""
    grid = [
        (a, s, r)
        for a in ("dpo", "ipo", "best_of_n", "reinforce")
        for s in ("online", "offline")
        for r in ("hard", "easy")
    ]
    full = pd.DataFrame(grid, columns=["algo", "sampling", "task.reward"])
    assert not_run(FINDINGS["T1"], full) == ""
    cut = full[full["algo"].isin(["dpo", "best_of_n"])]
    assert not_run(FINDINGS["T1"], cut) == (
        "Judged on the runs made: algo=dpo, best_of_n only (ipo, reinforce not run); a sweep cut down, e.g. for a "
        "budget."
    )
    online_hard = cut[(cut["sampling"] == "online") & (cut["task.reward"] == "hard")]
    assert "task.reward=hard only (easy not run); sampling=online only (offline not run)" in not_run(
        FINDINGS["T1"], online_hard
    )


@pytest.mark.slow
def test_the_report_runs_judges_resumes_and_refuses_what_is_not_its_experiments(tmp_path):
    args = ["--only", "T1", "--out", "rep", "train.iterations=4", "findings.seeds=2", "algo=dpo"]
    run_cli(args, tmp_path, module="alignlab.science.report")
    report = (tmp_path / "rep" / "REPORT.md").read_text()
    assert "## T1:" in report and "Criterion history: (1) 2026-11-26" in report and "T2" not in report
    assert "| dpo on hard | " in report and " | 2 | at least 0.2 | " in report  # an interval over 2 seeds
    assert "algo=dpo only (ipo, best_of_n, reinforce not run)" in report  # the sweep was cut to DPO
    records = json.loads((tmp_path / "rep" / "verdicts.json").read_text())
    assert [r["finding"] for r in records] == ["T1"] and len(records[0]["checks"]) == 2
    assert (tmp_path / "rep" / "index.html").exists()
    assert (tmp_path / "rep" / "figures" / "online_vs_offline" / "reward_vs_iteration.png").exists()
    first = sorted(p.stat().st_mtime for p in (tmp_path / "rep" / "runs").rglob("metrics.csv"))
    run_cli(args, tmp_path, module="alignlab.science.report")  # resumes: every run is already done
    assert sorted(p.stat().st_mtime for p in (tmp_path / "rep" / "runs").rglob("metrics.csv")) == first

    # runs made with another override in the same folder are named and left out, not averaged in
    proc = run_cli([*args[:-3], "train.iterations=5", *args[-2:]], tmp_path, module="alignlab.science.report")
    left_out = [line for line in proc.stderr.splitlines() if line.startswith("alignlab-report: left out")]
    assert len(left_out) == 8 and all("(train.iterations differ)" in line for line in left_out)
    assert "8 run(s) left out, not averaged" in (tmp_path / "rep" / "REPORT.md").read_text()

    # nothing whole to judge: every summary lost its reward -> exit 1, each run named
    for path in (tmp_path / "rep" / "runs").rglob("seed=*/summary.json"):
        path.write_text(json.dumps({"seed": 0}))
    proc = run_cli(args, tmp_path, module="alignlab.science.report", check=False)
    assert proc.returncode == 1 and "no finding could be judged on any run" in proc.stderr.splitlines()[-1]
    assert proc.stderr.count("lacks the key 'reward'") == 16  # both sweeps' runs, each named


# ---- the docs' verdict tables are generated ----------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]


def test_the_docs_verdict_tables_are_what_the_report_generates_from_the_saved_verdicts():
    generated = verdicts_block(ROOT / "docs" / "verdicts")
    assert generated in (ROOT / "docs" / "verdicts.md").read_text(), (
        "docs/verdicts.md is stale: regenerate its block with `alignlab-report --verdicts docs/verdicts`"
    )


def test_the_verdict_tables_decide_again_with_todays_bars():
    record = {"finding": "T4", "task": "bandit", "overrides": [], "extension_of": None, "status": "holds"}
    record["checks"] = [{"part": "budget", "name": "dpo B=2 - B=32", "effect": 0.06, "low": 0.051, "high": 0.07,
                         "seeds": 10, "more_seeds": None}]  # fmt: skip
    assert "| T4 | **holds**, 10 seeds |" in verdicts_markdown([record])
    record["checks"][0]["low"] = 0.04  # the interval now reaches below the bar of 0.05
    assert "| T4 | **inconclusive**, 10 seeds |" in verdicts_markdown([record])


def test_build_is_the_clis_instantiate():
    assert build({"_target_": "alignlab.core.objectives.DPO", "beta": 0.2}).beta == 0.2


def test_the_verdict_table_puts_the_tiers_left_to_right():
    records = [record(FINDINGS["T6"], Verdict("inconclusive", {}, ""), task, []) for task in
               ("full_scale", "synthetic_llm", "bandit_contextual", "bandit")]  # fmt: skip
    header = verdicts_markdown(records).splitlines()[0]
    assert header == "| finding | task=bandit | task=bandit_contextual | task=synthetic_llm | task=full_scale |"
