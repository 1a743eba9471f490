"""Tier 3 in T1's setting (issue 15): the `easy` role (a length reward peaked at the reference's mode, the
24-token cap for SmolLM2) and sampling=offline's data drawn once from the reference and scored by the reward,
with the preference pairs file only when `task.pairs` asks for it. Tiny model, no download."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

pytest.importorskip("transformers")

from alignlab.core.roles import resolve_reward
from alignlab.errors import ConfigError
from alignlab.lm.policy import TokenCompletions
from alignlab.storage.recording import ROLLOUTS
from full_scale import FullScaleTask
from full_scale.data import load_pairs, sample_file
from tests.test_bad_input import FAST, T3, run_main

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def make_task(**kwargs) -> FullScaleTask:
    args = dict(model="tiny", device="cpu", max_new_tokens=6, eval_prompts=2, eval_samples_per_prompt=1)
    return FullScaleTask(**(args | kwargs))


def composed_task(*overrides: str) -> dict:
    """conf/task/full_scale.yaml composed with `overrides`, its role resolved as the CLI does."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module("alignlab.conf", version_base="1.3"):
            cfg = compose("config", overrides=["task=full_scale", *overrides])
    finally:
        GlobalHydra.instance().clear()
    return resolve_reward(OmegaConf.to_container(cfg.task, resolve=True))


def completions_of_lengths(task: FullScaleTask, lengths: list[int]) -> TokenCompletions:
    """Completions whose masks cover `lengths` tokens (the tokens themselves do not matter to a length reward)."""
    width = task.max_new_tokens
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).float()
    return TokenCompletions(torch.full((len(lengths), width), 5, dtype=torch.long), mask)


# ---- the easy role -----------------------------------------------------------------------------------------
def test_the_easy_role_is_the_long_length_reward_and_hard_stays_the_short_one():
    assert composed_task("task.reward=easy")["reward"] == "long_length"
    assert composed_task("task.reward=hard")["reward"] == "length"
    assert composed_task()["reward"] == "length"  # the default run is unchanged


def test_long_length_scores_the_fraction_of_the_cap_whatever_length_target_says():
    lengths = [6, 3, 1, 0]
    for target in ("short", "long"):
        task = make_task(reward="long_length", length_target=target)
        prompts = task.train_prompts[:4]
        scores = task.reward(prompts, completions_of_lengths(task, lengths))
        assert torch.equal(scores, torch.tensor([6.0, 3.0, 1.0, 0.0]) / 6)  # 1, 0.5, 1/6, 0: peaked at the cap
    hard = make_task(reward="length")
    assert torch.equal(hard.reward(prompts, completions_of_lengths(hard, lengths)), 1 - torch.tensor(lengths) / 6)


# ---- offline data: reference samples, drawn once, scored by the reward --------------------------------------
@pytest.mark.parametrize("reward", ["length", "long_length"])
def test_offline_data_are_reference_samples_scored_by_the_reward(reward):
    task = make_task(reward=reward)
    data = task.offline_data(3, 4, torch.Generator().manual_seed(7))
    generator = torch.Generator().manual_seed(7)  # the same draws, by hand: 3 training prompts, 4 samples each
    prompts = task.sample_prompts(3, generator)
    with torch.no_grad():
        expected = task.make_reference().sample(prompts, 4, generator)
    assert len(data) == 12 and data.samples_per_prompt == 4
    assert [p.tolist() for p in data.prompts] == [p.tolist() for p in prompts for _ in range(4)]
    assert torch.equal(data.completions.tokens, expected.tokens) and torch.equal(data.completions.mask, expected.mask)
    fraction = expected.lengths / 6
    assert torch.equal(data.rewards, fraction if reward == "long_length" else 1 - fraction)


def test_the_pairs_file_is_the_offline_data_only_when_asked_for():
    pairs = load_pairs(sample_file("pairs.jsonl"))
    task = make_task(pairs="sample")
    data = task.offline_data(5, 2, torch.Generator().manual_seed(0))
    assert data.rewards.tolist() == [1.0, 0.0] * 5
    texts = task.decode(data.completions)
    chosen = {(p.chosen, p.rejected) for p in pairs}
    assert all((texts[2 * i], texts[2 * i + 1]) in chosen for i in range(5)), "chosen then rejected, from the file"
    with pytest.raises(ConfigError, match=r"samples_per_prompt=2, or drop task.pairs"):
        task.offline_data(4, 4, torch.Generator())


def test_offline_on_the_easy_role_runs_from_the_cli_with_four_samples_per_prompt(tmp_path):
    """The whole chain: Hydra composes task.reward=easy, sampling=offline keeps offline.yaml's n = 4 (the pairs
    file refused any n but 2), and the recorded rows are reference samples scored r = len / max_new_tokens."""
    args = [*FAST, *T3, "task.reward=easy", "sampling=offline", "sampling.samples_per_prompt=4"]
    args += ["sampling.offline_prompts=3", "sampling.prompts_per_round=3", "task.max_new_tokens=6"]
    args += ["task.eval_prompts=2", "task.eval_samples_per_prompt=1", "record_rollouts=true", "hydra.run.dir=run"]
    code, stderr = run_main(args, tmp_path)
    assert code == 0, stderr
    frame = pd.read_parquet(tmp_path / "run" / ROLLOUTS)
    assert frame["offline"].all() and set(frame["samples_per_prompt"]) == {4} and len(frame) == 2 * 12
    lengths = frame["completion_tokens"].map(len)
    assert frame["reward"].tolist() == pytest.approx((lengths / 6).tolist(), abs=1e-7)
    assert frame["behaviour_logp"].notna().all()  # the reference's log-probs: it drew them


def test_pairs_with_another_sample_count_is_refused_in_one_line(tmp_path):
    """Refused when the sampler asks for the data, after the model's loading lines (so not in the one-line
    table of tests/test_bad_input.py)."""
    code, stderr = run_main(
        [*FAST, *T3, "sampling=offline", "task.pairs=sample", "sampling.samples_per_prompt=4"], tmp_path
    )
    errors = [line for line in stderr.splitlines() if line.startswith("alignlab: error:")]
    assert code == 2 and "Traceback" not in stderr and len(errors) == 1
    assert "sampling.samples_per_prompt=4" in errors[0] and "Fix: set sampling.samples_per_prompt=2" in errors[0]
