"""Tier 3's held-out evaluation reports a standard error next to each mean."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from full_scale import FullScaleTask  # noqa: E402


def test_each_mean_has_its_standard_error():
    task = FullScaleTask(model="tiny", device="cpu", max_new_tokens=5, eval_prompts=3, eval_samples_per_prompt=3)
    # A reward with spread on a random model's text: the share of vowels.
    task.reward_fn.score = lambda prompts, texts, lengths: torch.tensor(
        [sum(c in "aeiou" for c in t) / max(len(t), 1) for t in texts]
    )
    policy = task.make_policy()
    result = task.evaluate(policy, torch.Generator().manual_seed(0))
    rewards = torch.tensor([row["reward"] for row in task.last_samples], dtype=torch.float64)
    assert len(rewards) == 9
    assert result["reward"] == pytest.approx(rewards.mean().item(), rel=1e-6)
    assert result["reward_se"] == pytest.approx(rewards.std().item() / 3, rel=1e-6)
    assert result["reward_se"] > 0
    assert {"kl_ref_se", "mean_length_se"} <= set(result)
    assert result["kl_ref"] == pytest.approx(0.0, abs=1e-6) and result["kl_ref_se"] == pytest.approx(0.0, abs=1e-6)


def test_one_sample_has_no_standard_error():
    task = FullScaleTask(model="tiny", device="cpu", max_new_tokens=5, eval_prompts=1, eval_samples_per_prompt=1)
    result = task.evaluate(task.make_policy(), torch.Generator().manual_seed(0))
    assert "reward" in result and not any(key.endswith("_se") for key in result)
