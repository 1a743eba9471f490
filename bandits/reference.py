"""Reference distributions over arms."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def skewed_reference(num_arms: int, skew: float) -> Tensor:
    """pi_ref(a) proportional to exp(-skew * a): arm 0 is the mode, the last arm the least likely."""
    return torch.softmax(-skew * torch.arange(num_arms, dtype=torch.float64), dim=0)


def cauchy_tanh_histogram(num_arms: int = 100, loc: float = -0.7, scale: float = 0.4) -> Tensor:
    """The didactic reference of Tajwar et al. (their public bandit code): the histogram of tanh(X),
    X ~ Cauchy(loc, scale), in `num_arms` equal bins over [-1, 1], computed exactly from the Cauchy CDF
    (the limit of infinitely many samples): P(bin i) = F(atanh(b_{i+1})) - F(atanh(b_i))."""
    edges = torch.linspace(-1.0, 1.0, num_arms + 1, dtype=torch.float64)
    x = torch.atanh(edges.clamp(-1 + 1e-15, 1 - 1e-15))
    x[0], x[-1] = -math.inf, math.inf
    cdf = 0.5 + torch.atan((x - loc) / scale) / math.pi
    probs = cdf[1:] - cdf[:-1]
    return probs / probs.sum()
