"""Tier 3's training engine: fp32 master weights and Adam states under bf16 compute (full_scale/engine.py)."""

from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("transformers")

from alignlab.core.engine import TorchEngine  # noqa: E402
from full_scale import FullScaleTask  # noqa: E402

LR = 1e-5  # below half the bf16 spacing of most tiny-model weights: a bf16 parameter cannot take it


def one_step(mixed_precision):
    """One Adam step of a tiny bf16 task's policy, and the same step taken in plain fp32 from the same weights."""
    task = FullScaleTask(
        model="tiny",
        device="cpu",
        dtype="bfloat16",
        max_new_tokens=6,
        eval_prompts=2,
        eval_samples_per_prompt=1,
        mixed_precision=mixed_precision,
    )
    policy = task.make_policy()
    params = [p for p in policy.parameters() if p.requires_grad]
    engine = task.make_engine(params, LR, None)
    fp32 = copy.deepcopy(policy)
    fp32.autocast_dtype = None
    fp32.model.float()
    fp32_params = [p for p in fp32.parameters() if p.requires_grad]
    fp32_engine = TorchEngine(fp32_params, LR, None)
    prompts = task.train_prompts[:4]
    completions = policy.sample(prompts, 2, torch.Generator().manual_seed(0))
    rows = [p for p in prompts for _ in range(2)]
    before = torch.cat([p.detach().float().flatten() for p in fp32_params])
    for model, step in ((policy, engine), (fp32, fp32_engine)):
        step.step(-model.logprobs(rows, completions).sum().mean())
    after = torch.cat([p.detach().float().flatten() for p in params])
    reference = torch.cat([p.detach().flatten() for p in fp32_params])
    return task, engine, before, after, reference


def test_bf16_full_fine_tuning_keeps_fp32_master_weights_and_steps_like_fp32():
    task, engine, before, after, reference = one_step(None)
    assert task.mixed_precision
    held = [p for group in engine.optimizer.param_groups for p in group["params"]]
    assert {p.dtype for p in held} == {torch.float32}
    assert {s["exp_avg"].dtype for s in engine.optimizer.state.values()} == {torch.float32}
    assert {s["exp_avg_sq"].dtype for s in engine.optimizer.state.values()} == {torch.float32}
    assert task.base.dtype == torch.bfloat16  # the frozen reference stays 16-bit
    assert (after != before).all()  # every master weight took its lr-sized step
    # The step equals the fp32 one except where bf16 compute flips the sign of a near-zero gradient (Adam's
    # first step is lr * sign(g)): at most 2 lr apart, and apart by more than lr/10 on under 1% of the weights.
    difference = (after - reference).abs()
    assert difference.max() <= 2 * LR * 1.001
    assert (difference > LR / 10).float().mean() < 0.01


def test_bf16_weights_without_master_copy_lose_small_updates():
    task, engine, before, after, reference = one_step(False)
    assert not task.mixed_precision
    assert {p.dtype for group in engine.optimizer.param_groups for p in group["params"]} == {torch.bfloat16}
    assert (after == before.bfloat16().float()).float().mean() > 0.5  # most weights never moved
