"""Objectives: a target builder plus a loss. Hydra picks one with `_target_` (conf/algo/*.yaml)."""

from alignlab.core.objectives.base import Objective, Targets
from alignlab.core.objectives.likelihood import RAFT, RWR, SFT, BestOfN, ReST, SuperHF
from alignlab.core.objectives.policy_gradient import GRPO, PPO, RLOO, Reinforce
from alignlab.core.objectives.preference import CPO, DPO, IPO, KTO

__all__ = [
    "Objective",
    "Targets",
    "SFT",
    "BestOfN",
    "RAFT",
    "ReST",
    "RWR",
    "SuperHF",
    "Reinforce",
    "RLOO",
    "GRPO",
    "PPO",
    "DPO",
    "IPO",
    "KTO",
    "CPO",
]
