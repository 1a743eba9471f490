"""Tier 3 on the embedded SmolLM2-135M-Instruct (no download): a few steps of online DPO with a length
reward that favours short answers must shorten the held-out answers."""

from __future__ import annotations

import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest
import torch

from alignlab.core.objectives import DPO
from alignlab.core.sampling import SamplingConfig
from alignlab.core.train import TrainConfig, train
from full_scale import FullScaleTask
from full_scale.data import sample_file


@pytest.mark.slow
def test_smollm2_online_dpo_shortens_answers():
    started = time.perf_counter()
    task = FullScaleTask(
        model="smollm2",
        prompts=str(sample_file("brief_prompts.jsonl")),
        max_new_tokens=16,
        reward="length",
        length_target="short",
        eval_prompts=4,
        eval_samples_per_prompt=4,
    )
    loaded = time.perf_counter()
    before = task.evaluate(task.make_policy(), torch.Generator().manual_seed(1))
    sampling = SamplingConfig(prompts_per_round=2, samples_per_prompt=4)
    config = TrainConfig(iterations=4, lr=3e-5, eval_every=1000, progress=False)
    _, rows, policy = train(task, DPO(beta=0.1), sampling, config, seed=0)
    after = task.evaluate(policy, torch.Generator().manual_seed(1))
    print(
        f"SmolLM2 online DPO, length reward (short): held-out mean length {before['mean_length']:.2f} -> "
        f"{after['mean_length']:.2f} tokens, reward {before['reward']:.3f} -> {after['reward']:.3f}, "
        f"KL {after['kl_ref']:.3f}; load {loaded - started:.0f} s, total {time.perf_counter() - started:.0f} s"
    )
    assert sum(r.get("pairs/count", 0) for r in rows) >= 3, "too few preference pairs to learn from"
    assert after["mean_length"] < before["mean_length"]
    assert after["reward"] > before["reward"]
