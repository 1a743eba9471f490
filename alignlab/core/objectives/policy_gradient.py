"""Policy-gradient objectives: REINFORCE, RLOO, GRPO and PPO.

They differ in the advantage (a baseline, leave-one-out, group-normalised, or GAE with a learned value) and
in whether the update is clipped around the policy that sampled the data. On a language model the
loss is per token; on a bandit a completion is one token, so the same code applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from alignlab.core.losses import clipped_surrogate_loss, gae, kl_estimate, masked_mean, policy_gradient_loss, value_loss
from alignlab.core.objectives.base import Objective, Targets
from alignlab.core.targets import group_mean_baseline, group_normalized_advantages, leave_one_out_advantages
from alignlab.core.types import LogProbs, Rollout
from alignlab.errors import ConfigError, check_range

BASELINES = ("group_mean", "batch_mean", "none")


@dataclass
class Reinforce(Objective):
    """REINFORCE with a baseline (Williams 1992; for LMs, Ahmadian et al. 2024, arXiv:2402.14740):
    L = -(r - b) log pi(y|x), where b is the mean reward of the prompt's samples, of the batch, or 0."""

    name: ClassVar[str] = "reinforce"
    kl_in_reward_allowed: ClassVar[bool] = True

    baseline: str = "batch_mean"  # group_mean, batch_mean or none

    def check(self, samples_per_prompt: int) -> None:
        super().check(samples_per_prompt)
        if self.baseline not in BASELINES:
            raise ConfigError(f"algo.baseline={self.baseline} is not a baseline", f"use one of {', '.join(BASELINES)}")
        if self.baseline == "group_mean" and samples_per_prompt < 2:
            raise ConfigError(
                "a group_mean baseline needs several samples per prompt",
                "set sampling.samples_per_prompt=2 or more, or algo.baseline=batch_mean",
            )

    def advantages(self, rollout: Rollout, rewards: Tensor) -> Tensor:
        if self.baseline == "group_mean":
            return group_mean_baseline(rollout.grouped(rewards))
        if self.baseline == "batch_mean":
            return rewards - rewards.mean()
        return rewards

    def prepare(self, rollout: Rollout, iteration: int) -> Targets | None:
        return Targets(rollout, {"advantages": self.advantages(rollout, self.shaped_rewards(rollout))})

    def loss(self, targets: Targets, logps: LogProbs) -> tuple[Tensor, dict[str, Tensor]]:
        losses = policy_gradient_loss(logps.sum(), targets.tensors["advantages"])
        return losses.mean(), {"loss/policy": losses.detach().mean()}


@dataclass
class RLOO(Reinforce):
    """REINFORCE Leave-One-Out (Kool et al. 2019; Ahmadian et al. 2024, arXiv:2402.14740):
    A_i = r_i - mean_{j != i} r_j over the n samples of one prompt."""

    name: ClassVar[str] = "rloo"
    min_samples_per_prompt: ClassVar[int] = 2

    baseline: str = "none"

    def advantages(self, rollout: Rollout, rewards: Tensor) -> Tensor:
        return leave_one_out_advantages(rollout.grouped(rewards))


@dataclass
class GRPO(Objective):
    """Group Relative Policy Optimization (Shao et al. 2024, arXiv:2402.03300), eq. 3:

    A_i = (r_i - mean(r)) / std(r) over a prompt's group; per token
    L = -1/|y| sum_t [ min(rho_t A_i, clip(rho_t, 1-eps, 1+eps) A_i) ] + kl_coef * k3_t
    """

    name: ClassVar[str] = "grpo"
    reads_old_logps: ClassVar[bool] = True
    min_samples_per_prompt: ClassVar[int] = 2
    kl_in_reward_allowed: ClassVar[bool] = True

    clip_epsilon: float = 0.2
    kl_coef: float = 0.04
    kl_estimator: str = "k3"

    def check(self, samples_per_prompt: int) -> None:
        super().check(samples_per_prompt)
        check_range("algo.clip_epsilon", self.clip_epsilon, "(0, inf)", "the paper uses 0.2")

    def prepare(self, rollout: Rollout, iteration: int) -> Targets | None:
        advantages = group_normalized_advantages(rollout.grouped(self.shaped_rewards(rollout)))
        return Targets(rollout, {"advantages": advantages})

    def loss(self, targets: Targets, logps: LogProbs) -> tuple[Tensor, dict[str, Tensor]]:
        old = targets.rollout.old_logps
        per_token = clipped_surrogate_loss(
            logps.tokens, old.tokens, targets.tensors["advantages"][:, None], self.clip_epsilon
        )
        loss = masked_mean(per_token, logps.mask, dim=1).mean()
        ratio = torch.exp(logps.tokens.detach() - old.tokens)
        clipped = ((ratio - 1).abs() > self.clip_epsilon).float()
        return loss, {"loss/policy": loss.detach(), "ppo/clip_fraction": masked_mean(clipped, logps.mask)}

    def total_loss(self, targets: Targets, logps: LogProbs) -> tuple[Tensor, dict[str, Tensor]]:
        # GRPO averages its per-token KL over each completion (eq. 3), not the sum the base anchor takes.
        if not (self.kl_coef > 0 and self.kl_in == "loss"):
            return super().total_loss(targets, logps)
        loss, metrics = self.loss(targets, logps)
        per_token = kl_estimate(logps.tokens, targets.rollout.ref_logps.tokens, self.kl_estimator)
        kl = masked_mean(per_token, logps.mask, dim=1).mean()
        loss = loss + self.kl_coef * kl
        metrics |= {"loss/kl": kl.detach(), "loss/total": loss.detach()}
        return loss, metrics


@dataclass
class PPO(Objective):
    """Proximal Policy Optimization for RLHF (Schulman et al. 2017, arXiv:1707.06347; Ouyang et al. 2022,
    arXiv:2203.02155). Per-token rewards are -kl_coef * k1_t plus the sequence reward on the last token;
    advantages come from GAE (Schulman et al. 2015, arXiv:1506.02438) with a learned value model;
    L = clipped surrogate + value_coef * value loss."""

    name: ClassVar[str] = "ppo"
    reads_old_logps: ClassVar[bool] = True
    old_logps_in_targets: ClassVar[bool] = True
    kl_in_reward_allowed: ClassVar[bool] = True

    clip_epsilon: float = 0.2
    value_coef: float = 0.5  # weight of the value loss
    value_clip: float | None = 0.2  # clip the value update around the old values (None: no clipping)
    gamma: float = 1.0
    lam: float = 0.95  # GAE lambda
    whiten_advantages: bool = True
    kl_coef: float = 0.05
    kl_estimator: str = "k1"
    kl_in: str = "reward"

    def check(self, samples_per_prompt: int) -> None:
        super().check(samples_per_prompt)
        check_range("algo.clip_epsilon", self.clip_epsilon, "(0, inf)", "the paper uses 0.2")
        check_range("algo.value_coef", self.value_coef, "[0, inf)")
        check_range("algo.value_clip", self.value_clip, "(0, inf)", "null: no clipping")
        check_range("algo.gamma", self.gamma, "[0, 1]")
        check_range("algo.lam", self.lam, "[0, 1]", "the GAE lambda")

    def setup(self, task) -> list[nn.Module]:
        self.value_model = task.make_value_model()
        return [self.value_model]

    def prepare(self, rollout: Rollout, iteration: int) -> Targets | None:
        old = rollout.old_logps
        mask = old.mask
        with torch.no_grad():
            old_values = self.value_model(rollout.prompts, rollout.completions) * mask
        # Sequence reward on each completion's last token; per-token KL penalty everywhere (Ziegler et al. 2019).
        last = (mask.cumsum(1) == mask.sum(1, keepdim=True)) & (mask > 0)
        token_rewards = rollout.rewards[:, None] * last
        if self.kl_coef > 0 and self.kl_in == "reward":
            token_rewards = token_rewards - self.kl_coef * kl_estimate(
                old.tokens, rollout.ref_logps.tokens, self.kl_estimator
            )
        advantages, returns = gae(token_rewards, old_values, mask, self.gamma, self.lam)
        if self.whiten_advantages and mask.sum() > 1:
            mean = masked_mean(advantages, mask)
            std = masked_mean((advantages - mean) ** 2, mask).sqrt()
            advantages = (advantages - mean) / (std + 1e-8) * mask
        return Targets(rollout, {"advantages": advantages, "returns": returns, "old_values": old_values})

    def loss(self, targets: Targets, logps: LogProbs) -> tuple[Tensor, dict[str, Tensor]]:
        rollout, t = targets.rollout, targets.tensors
        policy = masked_mean(
            clipped_surrogate_loss(logps.tokens, rollout.old_logps.tokens, t["advantages"], self.clip_epsilon),
            logps.mask,
        )
        values = self.value_model(rollout.prompts, rollout.completions)
        value = masked_mean(value_loss(values, t["returns"], t["old_values"], self.value_clip), logps.mask)
        ratio = torch.exp(logps.tokens.detach() - rollout.old_logps.tokens)
        return policy + self.value_coef * value, {
            "loss/policy": policy.detach(),
            "loss/value": value.detach(),
            "ppo/clip_fraction": masked_mean(((ratio - 1).abs() > self.clip_epsilon).float(), logps.mask),
            "ppo/value_mean": masked_mean(values.detach(), logps.mask),
        }
