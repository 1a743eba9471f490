"""Tier 3's work per step, on the tiny random Llama: what a step may skip without changing a number.

- Online with one update per batch, the behaviour log-probs are the update's own forward pass (detached): the
  extra no-grad forward is skipped and the trained weights are bit-for-bit those of a run that computes it.
- The frozen reference's held-out samples are drawn once per run, not at every evaluation.
- The arithmetic task (the `verifiable` role) generates distinct problems with checkable answers.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

import alignlab.core.train as train_module
from alignlab.core.objectives import GRPO, PPO
from alignlab.core.sampling import Sampler, SamplingConfig
from alignlab.core.train import TrainConfig, old_logps_are_current, train
from alignlab.errors import ConfigError
from full_scale import FullScaleTask
from full_scale.arithmetic import arithmetic_problems
from full_scale.rewards import MathReward

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class CharCodeReward:
    def score(self, prompts, texts, lengths):
        return torch.tensor([sum(map(ord, t)) / max(len(t), 1) / 127 for t in texts])


def tiny_task(**kwargs) -> FullScaleTask:
    task = FullScaleTask(**(dict(model="tiny", max_new_tokens=6, eval_prompts=2, eval_samples_per_prompt=2) | kwargs))
    if task.reward_name == "length":
        task.reward_fn = CharCodeReward()
    return task


def trained_weights(task, monkeypatch, skip: bool) -> tuple[torch.Tensor, int]:
    """Final weights of 3 online GRPO rounds, and how many no-grad log-prob passes the policy made."""
    if not skip:
        monkeypatch.setattr(train_module, "old_logps_are_current", lambda sampler, objective: False)
    calls = []
    original = type(task.make_policy()).logprobs

    def counting(self, prompts, completions, *args):
        calls.append(torch.is_grad_enabled())
        return original(self, prompts, completions, *args)

    monkeypatch.setattr(type(task.make_policy()), "logprobs", counting)
    config = TrainConfig(iterations=3, lr=1e-2, eval_every=1000, progress=False)
    _, _, policy = train(task, GRPO(), SamplingConfig(prompts_per_round=2, samples_per_prompt=3), config, seed=0)
    monkeypatch.undo()
    weights = torch.cat([p.detach().flatten() for p in policy.parameters() if p.requires_grad])
    return weights, sum(1 for grad in calls if not grad)


def test_online_grpo_skips_the_behaviour_forward_and_trains_the_same_weights(monkeypatch):
    task = tiny_task()
    skipped, passes_skipped = trained_weights(task, monkeypatch, skip=True)
    computed, passes_computed = trained_weights(task, monkeypatch, skip=False)
    assert torch.equal(skipped, computed)
    assert passes_computed - passes_skipped == 3  # one no-grad forward per round saved (the reference's remain)


@pytest.mark.parametrize(
    "sampling, objective, current",
    [
        (dict(), GRPO(), True),
        (dict(updates_per_batch=2), GRPO(), False),  # the second update's behaviour is the pre-update policy
        (dict(sync_every=4), GRPO(), False),  # semi-online: a stale copy sampled
        (dict(offline_fraction=0.5), GRPO(), False),  # offline rows carry their own behaviour log-probs
        (dict(), GRPO(kl_in="reward"), False),  # the reward shaping reads them before the update
        (dict(), PPO(kl_in="loss"), False),  # GAE targets read them before the update
    ],
)
def test_old_logps_are_current_only_where_they_equal_the_updates_own(sampling, objective, current):
    cfg = SamplingConfig(**(dict(prompts_per_round=2, samples_per_prompt=2) | sampling))

    class Task:  # what Sampler asks of a task, no model
        def offline_data(self, num_prompts, samples_per_prompt, generator):
            from alignlab.core.types import Rollout

            return Rollout([0] * 2 * num_prompts, None, torch.zeros(2 * num_prompts), samples_per_prompt)

    sampler = Sampler(cfg, Task(), torch.nn.Linear(1, 1), torch.Generator())
    assert old_logps_are_current(sampler, objective) is current


def test_the_reference_is_sampled_once_for_all_evaluations():
    task = tiny_task(reward="arithmetic", num_problems=12, max_operand=9, eval_prompts=3)
    policy = task.make_policy()
    drawn = []
    reference = task.make_reference()
    original = type(reference).sample

    def counting(self, *args):
        drawn.append(self is reference)
        return original(self, *args)

    type(reference).sample = counting
    try:
        first = task.evaluate(policy, torch.Generator().manual_seed(0))
        second = task.evaluate(policy, torch.Generator().manual_seed(1))
    finally:
        type(reference).sample = original
    assert drawn.count(True) == 1 and drawn.count(False) == 2
    assert first["reference_reward"] == second["reference_reward"]
    assert {"reward", "win_rate", "kl_ref"} <= set(first)


def test_arithmetic_problems_are_distinct_reproducible_and_checkable():
    problems = arithmetic_problems(50, max_operand=9, operations="+-*", seed=3)
    assert problems == arithmetic_problems(50, max_operand=9, operations="+-*", seed=3)
    assert len({p.text for p in problems}) == 50
    reward = MathReward()
    for p in problems[:10]:
        a, op, b = p.text.removeprefix("What is ").split("?")[0].split()
        assert int(p.answer) == eval(f"{a}{op}{b}")  # noqa: S307 - two small integers of our own making
        assert reward.check(p.answer, f"The answer is {p.answer}.") == 1.0
        assert reward.check(p.answer, f"{int(p.answer) + 1}") == 0.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(count=10, max_operand=1), "task.max_operand=1 is below 2"),
        (dict(count=10, max_operand=9, operations="/"), "task.operations='/' has no operation or unknown"),
        (dict(count=10, max_operand=9, operations=""), "task.operations='' has no operation"),
        (dict(count=82, max_operand=9), "task.num_problems=82 is more than the 81 distinct problems"),
    ],
)
def test_bad_arithmetic_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        arithmetic_problems(**kwargs)


def test_arithmetic_generates_its_own_prompts():
    with pytest.raises(ConfigError, match="task.reward=arithmetic generates its own problems"):
        FullScaleTask(model="tiny", reward="arithmetic", prompts="full_scale/data/prompts.jsonl")


def test_offline_arithmetic_data_are_scored_reference_samples():
    task = tiny_task(reward="arithmetic", num_problems=12, max_operand=9, eval_prompts=3)
    data = task.offline_data(4, 2, torch.Generator().manual_seed(0))
    assert len(data) == 8 and data.samples_per_prompt == 2
    assert set(data.rewards.tolist()) <= {0.0, 1.0}
    assert all(data.prompts[2 * i] is data.prompts[2 * i + 1] for i in range(4))
