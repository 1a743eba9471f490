"""Tier 3's held-out evaluation, on the axes of Tang et al. 2024 (arXiv:2405.08448): reward, KL to the
reference, length, and the win rate against the reference, each mean with its standard error."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from alignlab.core.types import select
from alignlab.lm.policy import TokenCompletions
from full_scale.policy import AdapterOffReference, unwrap
from full_scale.rewards import LLMJudge

if TYPE_CHECKING:
    from full_scale.task import FullScaleTask


def mean_and_error(name: str, values: torch.Tensor) -> dict[str, float]:
    """`name`: the mean of per-sample values; `name_se`: its standard error, s.d. / sqrt(n), treating the
    samples as independent (k samples of one prompt are not quite: the error of a difference on the same
    prompts is smaller, of a new prompt set larger). With one sample there is no error to give."""
    values = values.double()
    out = {name: values.mean().item()}
    if len(values) > 1:
        out[f"{name}_se"] = (values.std() / len(values) ** 0.5).item()
    return out


@torch.no_grad()
def evaluate_rewards(task: FullScaleTask, policy, generator: torch.Generator, rewards: dict) -> dict[str, float]:
    """Each reward's mean on the held-out prompts of its kind (rows_for), on the samples of the evaluation
    that just ran (the same policy) so that the components and the mixture are measured on one sample."""
    policy = unwrap(policy)
    cached, task._eval_cache = task._eval_cache, None
    if cached is not None and cached[0] is policy:
        prompts, samples = cached[1], cached[2]
    else:
        k = task.eval_samples_per_prompt
        prompts = [p for p in task.eval_prompts for _ in range(k)]
        samples = policy.sample(task.eval_prompts, k, generator)
    result = {}
    for key, fn in rewards.items():
        rows = task.rows_for(getattr(fn, "name", key), prompts)
        if rows is None:
            result[key] = float(fn(prompts, samples).mean())
        elif len(rows):
            result[key] = float(fn(select(prompts, rows), select(samples, rows)).mean())
    return result


@torch.no_grad()
def evaluate(task: FullScaleTask, policy, generator: torch.Generator) -> dict[str, float]:
    """On the held-out prompts: mean reward and length of policy samples, KL(pi || pi_ref) estimated
    from them (sum over tokens of log pi - log pi_ref, averaged), and the win rate of a policy sample
    against a reference sample of the same prompt under the task's reward or judge (ties count 1/2). In a
    mixture's prompt set the reward and win rate are those of the prompts the task's reward scores
    (rows_for); the samples are kept for evaluate_rewards."""
    policy = unwrap(policy)
    reference = AdapterOffReference(policy) if task.lora is not None else (task._reference or task.make_reference())
    k = task.eval_samples_per_prompt
    prompts = [p for p in task.eval_prompts for _ in range(k)]
    rows = task.rows_for(task.reward_name, prompts)
    scored = prompts if rows is None else select(prompts, rows)

    def score(samples: TokenCompletions) -> torch.Tensor:
        return task.reward(scored, samples if rows is None else select(samples, rows))

    phases = 3 + (2 * (task._reference_eval is None) + task.judge_is_policy if task.win_rate else 0)
    bar = tqdm(total=phases, desc=f"evaluation on {len(prompts)} samples", unit="phase", delay=2.0, leave=False)
    samples = policy.sample(task.eval_prompts, k, generator)
    task._eval_cache = (policy, prompts, samples)
    bar.update(1)
    rewards = score(samples)
    bar.update(1)
    kl = policy.logprobs(prompts, samples).sum() - reference.logprobs(prompts, samples).sum()
    bar.update(1)
    result = mean_and_error("reward", rewards) | mean_and_error("kl_ref", kl)
    result |= mean_and_error("mean_length", samples.lengths)
    reference_texts = None
    if task.win_rate:
        # The reference is frozen: its held-out samples are drawn and scored once per run, not at every
        # evaluation; only a judge that is the policy itself must score them again. They are drawn from a
        # generator of their own, seeded from the evaluation's: a resumed run draws them again, at its first
        # evaluation, and must draw the same ones without moving the evaluation's stream.
        if task._reference_eval is None:
            own = torch.Generator().manual_seed(generator.initial_seed() + 1)
            reference_samples = reference.sample(task.eval_prompts, k, own)
            bar.update(1)
            task._reference_eval = (reference_samples, score(reference_samples))
            bar.update(1)
        reference_samples, reference_rewards = task._reference_eval
        if task.judge_is_policy:
            reference_rewards = score(reference_samples)
            bar.update(1)
        wins = (rewards > reference_rewards).float() + 0.5 * (rewards == reference_rewards).float()
        result |= mean_and_error("win_rate", wins)
        result["reference_reward"] = reference_rewards.mean().item()
        reference_texts = task.decode(reference_samples)
    bar.close()
    if isinstance(task.reward_fn, LLMJudge) and task.reward_fn.scoring == "generate" and task.reward_fn.calls:
        result["judge_parse_failures"] = task.reward_fn.parse_failures / task.reward_fn.calls
    texts = task.decode(samples)
    per_row = [None] * len(prompts)
    for i, r in zip(range(len(prompts)) if rows is None else rows.tolist(), rewards.tolist(), strict=True):
        per_row[i] = r
    task.last_samples = [
        {"prompt": task.record(p).text, "policy": t, "reward": per_row[i]}
        | ({"reference": reference_texts[i]} if reference_texts else {})
        for i, (p, t) in enumerate(zip(prompts, texts, strict=False))
    ]
    return result
