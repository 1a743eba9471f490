"""Tier 1: the K-armed softmax bandit (Tajwar et al. 2024, arXiv:2404.14367, Sec. 4.1).

A completion is one arm; its log-probability is log_softmax(logits)[arm]. Everything is exact: expected
reward, KL to the reference and the KL-regularised optimum pi* = pi_ref exp(r / beta) / Z.
"""

from bandits.contextual import ContextualBanditTask
from bandits.policy import SoftmaxPolicy, StateValue
from bandits.reference import cauchy_tanh_histogram, skewed_reference
from bandits.rewards import BumpReward
from bandits.task import BanditTask

__all__ = [
    "BanditTask",
    "ContextualBanditTask",
    "BumpReward",
    "SoftmaxPolicy",
    "StateValue",
    "cauchy_tanh_histogram",
    "skewed_reference",
]
