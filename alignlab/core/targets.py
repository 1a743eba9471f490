"""Target builders: how scored samples become what a loss trains on.

Rewards arrive grouped as [groups, samples_per_prompt] (samples of one prompt share a row). Each builder
returns flat indices into the rollout (row * n + column) or per-sample tensors. All are vectorised: a
round on a bandit costs a handful of tensor operations.
"""

from __future__ import annotations

import torch
from torch import Tensor


def best_vs_worst_pairs(grouped_rewards: Tensor, min_gap: float = 0.0) -> tuple[Tensor, Tensor, int]:
    """One pair per prompt: its best sample (chosen) against its worst (rejected).

    Prompts whose best and worst rewards differ by `min_gap` or less (ties included) give no pair.
    Returns (chosen indices, rejected indices, number of prompts skipped).
    """
    groups, n = grouped_rewards.shape
    best = grouped_rewards.argmax(dim=1)
    worst = grouped_rewards.argmin(dim=1)
    gap = grouped_rewards.max(dim=1).values - grouped_rewards.min(dim=1).values
    keep = gap > min_gap
    offset = torch.arange(groups) * n
    return (offset + best)[keep], (offset + worst)[keep], int(groups - keep.sum())


def all_ordered_pairs(grouped_rewards: Tensor, min_gap: float = 0.0) -> tuple[Tensor, Tensor, int]:
    """Every ordered pair (i, j) of samples of the same prompt with r_i - r_j > min_gap.

    Returns (chosen indices, rejected indices, number of candidate pairs skipped).
    """
    groups, n = grouped_rewards.shape
    diff = grouped_rewards[:, :, None] - grouped_rewards[:, None, :]  # [G, n, n]: r_i - r_j
    g, i, j = torch.nonzero(diff > min_gap, as_tuple=True)
    candidates = groups * n * (n - 1) // 2
    return g * n + i, g * n + j, candidates - g.numel()


def top_k_per_group(grouped_rewards: Tensor, k: int) -> Tensor:
    """Indices of the k best samples of each prompt (Best-of-N / rejection sampling)."""
    groups, n = grouped_rewards.shape
    top = grouped_rewards.topk(min(k, n), dim=1).indices
    return (top + torch.arange(groups)[:, None] * n).flatten()


def worse_than_best(grouped_rewards: Tensor) -> Tensor:
    """Mask [G, n] of the samples whose reward is below their prompt's best (the 'worse samples' of Tajwar
    et al.). A sample that ties the best is not worse: a prompt whose samples all tie has none."""
    return grouped_rewards < grouped_rewards.max(dim=1, keepdim=True).values


def top_fraction(rewards: Tensor, fraction: float) -> Tensor:
    """Indices of the best `fraction` of all samples in the pool, across prompts (RAFT)."""
    count = max(1, int(round(fraction * rewards.numel())))
    return rewards.topk(count).indices


def above_threshold(rewards: Tensor, threshold: float) -> Tensor:
    """Indices of samples whose reward is at least `threshold` (ReST's Improve step)."""
    return torch.nonzero(rewards >= threshold, as_tuple=True)[0]


def group_mean_baseline(grouped_rewards: Tensor) -> Tensor:
    """A_i = r_i - mean of its prompt's rewards (REINFORCE with a per-prompt baseline)."""
    return (grouped_rewards - grouped_rewards.mean(dim=1, keepdim=True)).flatten()


def leave_one_out_advantages(grouped_rewards: Tensor) -> Tensor:
    """RLOO: A_i = r_i - 1/(n-1) sum_{j != i} r_j, over the n samples of one prompt (needs n >= 2)."""
    n = grouped_rewards.shape[1]
    total = grouped_rewards.sum(dim=1, keepdim=True)
    return (grouped_rewards - (total - grouped_rewards) / (n - 1)).flatten()


def group_normalized_advantages(grouped_rewards: Tensor, eps: float = 1e-6) -> Tensor:
    """GRPO (Shao et al. 2024, arXiv:2402.03300): A_i = (r_i - mean(r)) / (std(r) + eps) within a prompt, with
    the population standard deviation (the paper does not say which; TRL uses the sample one)."""
    mean = grouped_rewards.mean(dim=1, keepdim=True)
    std = grouped_rewards.std(dim=1, keepdim=True, unbiased=False)
    return ((grouped_rewards - mean) / (std + eps)).flatten()


def desirable_labels(grouped_rewards: Tensor) -> tuple[Tensor, Tensor]:
    """KTO labels from rewards: a sample is desirable when it beats its prompt's mean reward.

    Returns (labels [N] bool, keep [N] bool); prompts whose samples all tie carry no signal and are dropped.
    """
    mean = grouped_rewards.mean(dim=1, keepdim=True)
    labels = grouped_rewards > mean
    spread = grouped_rewards.max(dim=1, keepdim=True).values > grouped_rewards.min(dim=1, keepdim=True).values
    keep = spread.expand_as(grouped_rewards)
    return labels.flatten(), keep.flatten()
