"""Maximum-likelihood objectives on selected or weighted samples.

SFT, Best-of-N, RAFT and ReST differ only in which samples they keep; RWR weights every sample; SuperHF adds
a KL anchor to Best-of-N; the negative-gradient variants of Tajwar et al. also push the worse samples down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from alignlab.core.losses import negative_gradient_loss, nll_loss, rwr_weights
from alignlab.core.objectives.base import Objective, Targets
from alignlab.core.objectives.preference import PairwiseObjective
from alignlab.core.targets import above_threshold, top_fraction, top_k_per_group, worse_than_best
from alignlab.core.types import LogProbs, Rollout
from alignlab.errors import ConfigError, check_range

NEGATIVES = ("none", "worst", "worse")


def nll_targets_loss(logps: LogProbs) -> tuple[Tensor, dict[str, Tensor]]:
    sequence = logps.sum()
    losses = nll_loss(sequence)
    return losses.mean(), {"loss/nll": losses.detach().mean(), "logps/chosen": sequence.detach().mean()}


@dataclass
class SFT(PairwiseObjective):
    """Supervised fine-tuning on preferred completions ("Pref-FT" in Tajwar et al. 2024, arXiv:2404.14367).

    Maximum likelihood on the chosen side of each preference pair: on a preference dataset, its chosen
    responses; on sampled data, each prompt's best sample.
    """

    name: ClassVar[str] = "sft"

    def prepare(self, rollout: Rollout, iteration: int) -> Targets | None:
        pairs = super().prepare(rollout, iteration)
        if pairs is None:
            return None
        chosen = torch.arange(len(pairs.rollout) // 2)
        return Targets(pairs.rollout.select(chosen), metrics=pairs.metrics)

    def loss(self, targets: Targets, logps: LogProbs) -> tuple[Tensor, dict[str, Tensor]]:
        return nll_targets_loss(logps)


@dataclass
class BestOfN(Objective):
    """Rejection sampling / filtered behaviour cloning: maximum likelihood on the best k of each prompt's n
    samples (Touvron et al. 2023, arXiv:2307.09288, Sec. 3.2.3), optionally with the negative gradient of
    Tajwar et al. 2024 (arXiv:2404.14367): `negative=worst` pushes down each prompt's worst sample,
    `negative=worse` the mean log-likelihood of all samples but the best."""

    name: ClassVar[str] = "best_of_n"
    min_samples_per_prompt: ClassVar[int] = 2

    keep_top: int = 1  # k: samples kept per prompt
    negative: str = "none"  # none, worst, worse
    negative_weight: float = 1.0  # alpha, the weight of the negative term (as conf/algo/best_of_n*.yaml)

    def check(self, samples_per_prompt: int) -> None:
        super().check(samples_per_prompt)
        if self.negative not in NEGATIVES:
            raise ConfigError(f"algo.negative={self.negative} is not a variant", f"use one of {', '.join(NEGATIVES)}")
        if self.negative != "none" and self.keep_top != 1:
            raise ConfigError("the negative-gradient variants contrast one best sample", "set algo.keep_top=1")
        check_range("algo.keep_top", self.keep_top, f"[1, {samples_per_prompt - 1}]", "fewer than samples_per_prompt")
        check_range("algo.negative_weight", self.negative_weight, "[0, inf)")

    def prepare(self, rollout: Rollout, iteration: int) -> Targets | None:
        grouped = rollout.grouped(rollout.rewards)
        if self.negative == "none":
            return Targets(rollout.select(top_k_per_group(grouped, self.keep_top)))
        # Keep every sample; the loss weighs the best +1 and the negatives -alpha (per prompt).
        n = rollout.samples_per_prompt
        best = torch.zeros_like(grouped, dtype=torch.bool).scatter(1, grouped.argmax(1, keepdim=True), True)
        if self.negative == "worst":
            negative = torch.zeros_like(best).scatter(1, grouped.argmin(1, keepdim=True), True)
        else:
            negative = worse_than_best(grouped)
        negative &= ~best  # a prompt whose samples all tie has no negative
        weight = negative.float() / negative.sum(1, keepdim=True).clamp(min=1)
        return Targets(rollout, {"best": best.flatten(), "negative_weight": weight.flatten()}, {"bon/n": float(n)})

    def loss(self, targets: Targets, logps: LogProbs) -> tuple[Tensor, dict[str, Tensor]]:
        if self.negative == "none":
            return nll_targets_loss(logps)
        sequence = logps.sum()
        groups = len(targets.rollout) // targets.rollout.samples_per_prompt
        best = sequence[targets.tensors["best"]]
        negative = (targets.tensors["negative_weight"] * sequence).view(groups, -1).sum(1)
        losses = negative_gradient_loss(best, negative, self.negative_weight)
        neg_mask = targets.tensors["negative_weight"] > 0
        return losses.mean(), {
            "loss/nll": -best.detach().mean(),
            "logps/chosen": best.detach().mean(),
            "logps/rejected": sequence.detach()[neg_mask].mean(),
            "logps/margin": best.detach().mean() - sequence.detach()[neg_mask].mean(),
        }


@dataclass
class RAFT(Objective):
    """Reward rAnked FineTuning (Dong et al. 2023, arXiv:2304.06767): maximum likelihood on the best
    `top_fraction` of the whole pool of samples, ranked across prompts."""

    name: ClassVar[str] = "raft"

    top_fraction: float = 0.25  # share of the pool that is kept

    def check(self, samples_per_prompt: int) -> None:
        super().check(samples_per_prompt)
        if not 0 < self.top_fraction <= 1:
            raise ConfigError(f"algo.top_fraction={self.top_fraction} is not a fraction", "use a value in (0, 1]")

    def prepare(self, rollout: Rollout, iteration: int) -> Targets | None:
        return Targets(rollout.select(top_fraction(rollout.rewards, self.top_fraction)))

    def loss(self, targets: Targets, logps: LogProbs) -> tuple[Tensor, dict[str, Tensor]]:
        return nll_targets_loss(logps)


@dataclass
class ReST(Objective):
    """Reinforced Self-Training (Gulcehre et al. 2023, arXiv:2308.08998): behaviour cloning on samples whose
    reward clears a threshold that rises over training (the Improve steps). The Grow step, sampling a new
    dataset from the current policy, is the sampling regime's `sync_every`."""

    name: ClassVar[str] = "rest"

    thresholds: list[float] = field(default_factory=lambda: [0.0, 0.3, 0.6, 0.9])  # tau_1 < tau_2 < ...
    iterations_per_threshold: int = 50  # iterations spent at each threshold before moving to the next

    def check(self, samples_per_prompt: int) -> None:
        super().check(samples_per_prompt)
        rising = all(a < b for a, b in zip(self.thresholds, self.thresholds[1:], strict=False))
        if not self.thresholds or not rising:
            raise ConfigError(
                f"algo.thresholds={list(self.thresholds)} do not rise strictly", "list thresholds in increasing order"
            )
        if self.iterations_per_threshold < 1:
            raise ConfigError(
                f"algo.iterations_per_threshold={self.iterations_per_threshold} is below 1", "set it to 1 or more"
            )

    def threshold(self, iteration: int) -> float:
        step = min(iteration // self.iterations_per_threshold, len(self.thresholds) - 1)
        return self.thresholds[step]

    def prepare(self, rollout: Rollout, iteration: int) -> Targets | None:
        threshold = self.threshold(iteration)
        idx = above_threshold(rollout.rewards, threshold)
        metrics = {"rest/threshold": threshold, "pairs/skipped_fraction": 1.0 - idx.numel() / len(rollout)}
        return Targets(rollout.select(idx), metrics=metrics) if idx.numel() else None

    def loss(self, targets: Targets, logps: LogProbs) -> tuple[Tensor, dict[str, Tensor]]:
        return nll_targets_loss(logps)


@dataclass
class RWR(Objective):
    """Reward-weighted regression (Peters & Schaal 2007; Dayan & Hinton 1997): maximum likelihood on every
    sample, weighted by exp(r / beta), clipped at `max_weight` or self-normalised over the batch."""

    name: ClassVar[str] = "rwr"

    beta: float = 0.1  # temperature of the weights
    normalize: bool = True  # self-normalise the weights over the batch (mean 1)
    max_weight: float | None = None  # clip exp(r / beta) at this value when not normalising

    def check(self, samples_per_prompt: int) -> None:
        super().check(samples_per_prompt)
        check_range("algo.beta", self.beta, "(0, inf)", "the temperature of exp(r / beta)")
        check_range("algo.max_weight", self.max_weight, "(0, inf)", "null: no clipping")

    def prepare(self, rollout: Rollout, iteration: int) -> Targets | None:
        weights = rwr_weights(rollout.rewards, self.beta, self.max_weight, self.normalize)
        return Targets(rollout, {"weights": weights})

    def loss(self, targets: Targets, logps: LogProbs) -> tuple[Tensor, dict[str, Tensor]]:
        sequence = logps.sum()
        losses = nll_loss(sequence, targets.tensors["weights"])
        return losses.mean(), {"loss/nll": losses.detach().mean(), "rwr/max_weight": targets.tensors["weights"].max()}


@dataclass
class SuperHF(BestOfN):
    """SuperHF (Mukobi et al. 2023, arXiv:2310.16763): supervised learning on each prompt's best sample
    (filtered by the reward), plus a KL penalty to the reference, L = -log pi(y_best) + kl_coef * KL."""

    name: ClassVar[str] = "superhf"

    kl_coef: float = 0.1
    kl_estimator: str = "k3"

    def check(self, samples_per_prompt: int) -> None:
        super().check(samples_per_prompt)
        if self.kl_coef <= 0:
            raise ConfigError(
                "superhf without its KL penalty is best_of_n", "set algo.kl_coef > 0 or use algo=best_of_n"
            )
