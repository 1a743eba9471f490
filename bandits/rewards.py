"""Bandit rewards: a bump over the arm index."""

from __future__ import annotations

import torch
from torch import Tensor


class BumpReward:
    """r(a) = exp(-((a - peak) / width)^2), in (0, 1], maximal at `peak`."""

    def __init__(self, num_arms: int, peak: int, width: float):
        self.peak, self.width = peak, width
        arms = torch.arange(num_arms, dtype=torch.float32)
        self.table = torch.exp(-(((arms - peak) / width) ** 2))

    def __call__(self, prompts: list, completions: Tensor) -> Tensor:
        return self.table[completions]
