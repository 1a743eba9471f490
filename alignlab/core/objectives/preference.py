"""Contrastive preference objectives: DPO, IPO, CPO (pairs) and KTO (unpaired labels).

Pairs come from the rewards of several samples of one prompt: best vs worst by default, or all ordered pairs,
with an optional minimum reward gap. Online, iterative and semi-online DPO are DPO under another sampling
regime (conf/sampling), not other objectives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from alignlab.core.losses import cpo_loss, dpo_loss, ipo_loss, kto_loss
from alignlab.core.objectives.base import Objective, Targets
from alignlab.core.targets import all_ordered_pairs, best_vs_worst_pairs, desirable_labels
from alignlab.core.types import LogProbs, Rollout
from alignlab.errors import ConfigError, check_range

PAIRINGS = ("best_vs_worst", "all")


@dataclass
class PairwiseObjective(Objective):
    """Shared pair building for DPO, IPO, CPO (and SFT on chosen completions)."""

    min_samples_per_prompt: ClassVar[int] = 2

    pairs: str = "best_vs_worst"  # "best_vs_worst": one pair per prompt; "all": every ordered pair
    min_reward_gap: float = 0.0  # pairs whose rewards differ by this much or less are skipped

    def check(self, samples_per_prompt: int) -> None:
        super().check(samples_per_prompt)
        if self.pairs not in PAIRINGS:
            raise ConfigError(f"algo.pairs={self.pairs} is not a pairing", f"use one of {', '.join(PAIRINGS)}")
        check_range("algo.min_reward_gap", self.min_reward_gap, "[0, inf)", "0 keeps every pair with distinct rewards")

    def prepare(self, rollout: Rollout, iteration: int) -> Targets | None:
        build = best_vs_worst_pairs if self.pairs == "best_vs_worst" else all_ordered_pairs
        chosen, rejected, skipped = build(rollout.grouped(rollout.rewards), self.min_reward_gap)
        candidates = chosen.numel() + skipped
        metrics = {"pairs/count": float(chosen.numel()), "pairs/skipped_fraction": skipped / max(candidates, 1)}
        if chosen.numel() == 0:
            return None
        # Chosen completions first, rejected second: the loss splits the log-probs in halves.
        both = rollout.select(torch.cat([chosen, rejected]))
        return Targets(both, metrics=metrics)

    @staticmethod
    def split(x: Tensor) -> tuple[Tensor, Tensor]:
        half = x.shape[0] // 2
        return x[:half], x[half:]

    def pair_metrics(self, logps: Tensor) -> dict[str, Tensor]:
        chosen, rejected = self.split(logps.detach())
        return {
            "logps/chosen": chosen.mean(),
            "logps/rejected": rejected.mean(),
            "logps/margin": (chosen - rejected).mean(),
        }


@dataclass
class DPO(PairwiseObjective):
    """Direct Preference Optimization (Rafailov et al. 2023, arXiv:2305.18290)."""

    name: ClassVar[str] = "dpo"
    reads_reference: ClassVar[bool] = True

    beta: float = 0.1  # inverse strength of the implicit KL anchor
    label_smoothing: float = 0.0  # conservative DPO: probability that a label is flipped

    def check(self, samples_per_prompt: int) -> None:
        super().check(samples_per_prompt)
        check_range("algo.beta", self.beta, "(0, inf)", "the DPO paper uses 0.1 to 0.5")
        check_range("algo.label_smoothing", self.label_smoothing, "[0, 0.5)", "a flip probability; 0 is plain DPO")

    def loss(self, targets: Targets, logps: LogProbs) -> tuple[Tensor, dict[str, Tensor]]:
        policy_chosen, policy_rejected = self.split(logps.sum())
        ref_chosen, ref_rejected = self.split(targets.rollout.ref_logps.sum())
        losses, chosen_rewards, rejected_rewards = dpo_loss(
            policy_chosen, policy_rejected, ref_chosen, ref_rejected, self.beta, self.label_smoothing
        )
        metrics = self.pair_metrics(logps.sum())
        metrics |= {
            "loss/preference": losses.detach().mean(),
            "rewards/chosen": chosen_rewards.mean(),
            "rewards/rejected": rejected_rewards.mean(),
            "rewards/margin": (chosen_rewards - rejected_rewards).mean(),
            "rewards/accuracy": (chosen_rewards > rejected_rewards).float().mean(),
        }
        return losses.mean(), metrics


@dataclass
class IPO(PairwiseObjective):
    """Identity Preference Optimization (Azar et al. 2023, arXiv:2310.12036)."""

    name: ClassVar[str] = "ipo"
    reads_reference: ClassVar[bool] = True

    tau: float = 0.05  # the target log-ratio margin 1 / (2 tau) = 10, as Tajwar et al.'s code (conf/algo/ipo.yaml)

    def check(self, samples_per_prompt: int) -> None:
        super().check(samples_per_prompt)
        check_range("algo.tau", self.tau, "(0, inf)", "the margin is 1 / (2 tau)")

    def loss(self, targets: Targets, logps: LogProbs) -> tuple[Tensor, dict[str, Tensor]]:
        policy_chosen, policy_rejected = self.split(logps.sum())
        ref_chosen, ref_rejected = self.split(targets.rollout.ref_logps.sum())
        losses = ipo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, self.tau)
        return losses.mean(), self.pair_metrics(logps.sum()) | {"loss/preference": losses.detach().mean()}


@dataclass
class CPO(PairwiseObjective):
    """Contrastive Preference Optimization (Xu et al. 2024, arXiv:2401.08417): reference-free."""

    name: ClassVar[str] = "cpo"

    beta: float = 0.1
    nll_weight: float = 1.0  # weight of the NLL term on chosen completions

    def check(self, samples_per_prompt: int) -> None:
        super().check(samples_per_prompt)
        check_range("algo.beta", self.beta, "(0, inf)")
        check_range("algo.nll_weight", self.nll_weight, "[0, inf)")

    def loss(self, targets: Targets, logps: LogProbs) -> tuple[Tensor, dict[str, Tensor]]:
        policy_chosen, policy_rejected = self.split(logps.sum())
        losses = cpo_loss(policy_chosen, policy_rejected, self.beta, self.nll_weight)
        return losses.mean(), self.pair_metrics(logps.sum()) | {"loss/preference": losses.detach().mean()}


@dataclass
class KTO(Objective):
    """Kahneman-Tversky Optimization (Ethayarajh et al. 2024, arXiv:2402.01306).

    Labels come from rewards: a sample is desirable when it beats its prompt's mean. The reference point z0
    is the batch estimate of KL(pi || pi_ref), max(0, mean(log pi - log pi_ref)), detached (as the paper's
    implementation does with mismatched completions; here the batch's own completions stand in).
    """

    name: ClassVar[str] = "kto"
    reads_reference: ClassVar[bool] = True
    min_samples_per_prompt: ClassVar[int] = 2

    beta: float = 0.1
    desirable_weight: float = 1.0  # lambda_D
    undesirable_weight: float = 1.0  # lambda_U

    def check(self, samples_per_prompt: int) -> None:
        super().check(samples_per_prompt)
        check_range("algo.beta", self.beta, "(0, inf)")
        check_range("algo.desirable_weight", self.desirable_weight, "[0, inf)")
        check_range("algo.undesirable_weight", self.undesirable_weight, "[0, inf)")
        if self.desirable_weight == self.undesirable_weight == 0:
            raise ConfigError("algo.desirable_weight and algo.undesirable_weight are both 0", "set one above 0")

    def prepare(self, rollout: Rollout, iteration: int) -> Targets | None:
        labels, keep = desirable_labels(rollout.grouped(rollout.rewards))
        metrics = {"pairs/skipped_fraction": 1.0 - keep.float().mean().item()}
        if not keep.any():
            return None
        idx = torch.nonzero(keep, as_tuple=True)[0]
        return Targets(rollout.select(idx), {"desirable": labels[idx]}, metrics)

    def loss(self, targets: Targets, logps: LogProbs) -> tuple[Tensor, dict[str, Tensor]]:
        policy = logps.sum()
        reference = targets.rollout.ref_logps.sum()
        desirable = targets.tensors["desirable"]
        z0 = (policy - reference).detach().mean().clamp(min=0)
        losses = kto_loss(policy, reference, desirable, z0, self.beta, self.desirable_weight, self.undesirable_weight)
        detached = policy.detach()
        return losses.mean(), {
            "loss/preference": losses.detach().mean(),
            "logps/chosen": detached[desirable].mean(),
            "logps/rejected": detached[~desirable].mean(),
            "logps/margin": detached[desirable].mean() - detached[~desirable].mean(),
            "kto/reference_point": z0,
        }
