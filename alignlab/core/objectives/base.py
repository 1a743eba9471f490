"""The objective interface: a target builder plus a loss, and the KL anchor they share.

An objective sees a scored `Rollout`, turns it once into `Targets` (`prepare`), then is asked for a loss on
the policy's log-probs of the targets' completions, `updates_per_batch` times (`loss`). It never knows
which tier produced the completions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from torch import Tensor, nn

from alignlab.core.losses import kl_estimate
from alignlab.core.types import LogProbs, Rollout
from alignlab.errors import ConfigError, check_range

KL_ESTIMATORS = ("k1", "k2", "k3")


@dataclass
class Targets:
    """What a loss trains on: the completions it needs log-probs for, plus per-sample tensors."""

    rollout: Rollout
    tensors: dict[str, Tensor] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Objective:
    """Base class. Subclasses set the class constants and implement `prepare` and `loss`."""

    name: ClassVar[str]
    # Does the loss itself read reference log-probs (DPO, IPO, KTO)?
    reads_reference: ClassVar[bool] = False
    # Does the loss read log-probs of the behaviour policy that sampled the data (PPO/GRPO ratios)?
    reads_old_logps: ClassVar[bool] = False
    # Does `prepare` read them too (PPO's GAE), so that they must exist before the first update?
    old_logps_in_targets: ClassVar[bool] = False
    # Fewest samples per prompt the target builder can use (pairs and group baselines need 2).
    min_samples_per_prompt: ClassVar[int] = 1
    # Can the KL anchor be subtracted from the reward (policy-gradient methods) as well as added to the loss?
    kl_in_reward_allowed: ClassVar[bool] = False

    kl_coef: float = 0.0  # weight of the KL(pi || pi_ref) anchor (0 disables it)
    kl_estimator: str = "k3"  # k1, k2 or k3 (see alignlab.core.losses.kl_estimate)
    kl_in: str = "loss"  # "loss": + kl_coef * KL in the loss; "reward": r - kl_coef * KL (policy gradient only)

    # ---- what the training loop asks -------------------------------------------------------------------
    @property
    def needs_reference(self) -> bool:
        return self.reads_reference or self.kl_coef > 0

    @property
    def needs_old_logps(self) -> bool:
        return self.reads_old_logps or (self.kl_coef > 0 and self.kl_in == "reward")

    @property
    def needs_old_logps_before_update(self) -> bool:
        return self.needs_old_logps and (self.old_logps_in_targets or (self.kl_coef > 0 and self.kl_in == "reward"))

    @property
    def needs_reference_before_targets(self) -> bool:
        """Does `prepare` read reference log-probs (the KL anchor in the reward)? Otherwise only the loss reads
        them, on its targets' rows, and the loop takes them after `prepare` for those rows alone."""
        return self.kl_coef > 0 and self.kl_in == "reward"

    def check(self, samples_per_prompt: int) -> None:
        """Raise ConfigError when this objective cannot use what the sampling regime gives."""
        if samples_per_prompt < self.min_samples_per_prompt:
            raise ConfigError(
                f"algo={self.name} needs at least {self.min_samples_per_prompt} samples per prompt to build its "
                f"targets, but sampling.samples_per_prompt={samples_per_prompt}",
                f"set sampling.samples_per_prompt={max(2, self.min_samples_per_prompt)} or more",
            )
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ConfigError(f"unknown KL estimator algo.kl_estimator={self.kl_estimator}", "use one of k1, k2, k3")
        if self.kl_in not in ("loss", "reward"):
            raise ConfigError(f"algo.kl_in={self.kl_in} is not a place for the KL anchor", "use loss or reward")
        if self.kl_in == "reward" and not self.kl_in_reward_allowed:
            raise ConfigError(
                f"algo={self.name} has no reward to put the KL anchor in (algo.kl_in=reward)",
                "set algo.kl_in=loss",
            )
        check_range("algo.kl_coef", self.kl_coef, "[0, inf)", "0 disables the KL anchor")

    def setup(self, task) -> list[nn.Module]:
        """Build extra trainable modules (a value model); they join the policy's optimizer."""
        return []

    def prepare(self, rollout: Rollout, iteration: int) -> Targets | None:
        """Turn a scored rollout into targets, once per round. None when the round has no usable signal."""
        raise NotImplementedError

    def loss(self, targets: Targets, logps: LogProbs) -> tuple[Tensor, dict[str, Tensor]]:
        """The objective's loss on the policy's log-probs of `targets.rollout`, with metrics."""
        raise NotImplementedError

    # ---- the KL anchor ---------------------------------------------------------------------------------
    def sequence_kl(self, logps: LogProbs, reference: LogProbs) -> Tensor:
        """Per-completion KL estimate: the chosen estimator summed over the completion's tokens, [N]."""
        return (kl_estimate(logps.tokens, reference.tokens, self.kl_estimator) * logps.mask).sum(-1)

    def total_loss(self, targets: Targets, logps: LogProbs) -> tuple[Tensor, dict[str, Tensor]]:
        loss, metrics = self.loss(targets, logps)
        if self.kl_coef > 0 and self.kl_in == "loss":
            kl = self.sequence_kl(logps, targets.rollout.ref_logps).mean()
            metrics["loss/kl"] = kl.detach()
            loss = loss + self.kl_coef * kl
        metrics["loss/total"] = loss.detach()
        return loss, metrics

    def shaped_rewards(self, rollout: Rollout) -> Tensor:
        """r - kl_coef * KL(pi_old || pi_ref) per completion when the anchor is in the reward, else r."""
        if self.kl_coef > 0 and self.kl_in == "reward":
            return rollout.rewards - self.kl_coef * self.sequence_kl(rollout.old_logps, rollout.ref_logps)
        return rollout.rewards
