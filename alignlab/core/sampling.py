"""Sampling regimes: where each round's training data comes from (DESIGN.md, "The one idea").

- offline (`sync_every=None`): a dataset drawn once (from the reference, a behaviour policy or a file),
  consumed in shuffled passes.
- online (`sync_every=1`): fresh samples from the current policy every round.
- semi-online (`sync_every=s`, Lanchantin et al. 2025, arXiv:2506.21495): samples from a frozen copy of the
  policy that is refreshed once `s` optimizer updates have been taken since the last refresh.
`offline_fraction` mixes offline prompts into online rounds (Tajwar et al. 2024, arXiv:2404.14367).
The offline data is the task's (reference samples), a recording (`dataset`, replayed in `recorded` order or in
`shuffled` passes) or samples of a finished run's policy (`behaviour_from`). The last two live on disk: the
caller's storage reads them (alignlab/storage/run.py) and hands them to the sampler as an `OfflineSource`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from omegaconf import OmegaConf

from alignlab.core.types import Rollout
from alignlab.errors import ConfigError

ORDERS = ("recorded", "shuffled")  # sampling.dataset_order


def rounds_for_budget(prompt_budget: int, prompts_per_round: int) -> int:
    """Rounds that spend `prompt_budget` prompts at B prompts a round (the batch_size experiment's
    `train.iterations: ${alignlab_rounds:${findings.prompt_budget},${sampling.prompts_per_round}}`)."""
    if prompt_budget % prompts_per_round:
        raise ValueError(
            f"findings.prompt_budget={prompt_budget} is not a multiple of sampling.prompts_per_round="
            f"{prompts_per_round}. Fix: choose a budget that every swept B divides"
        )
    return prompt_budget // prompts_per_round


OmegaConf.register_new_resolver("alignlab_rounds", rounds_for_budget, replace=True)


@dataclass
class SamplingConfig:
    """One round = `prompts_per_round` prompts x `samples_per_prompt` completions, then
    `updates_per_batch` gradient steps on that batch."""

    name: str = "online"
    sync_every: int | None = 1  # s: updates between refreshes of the sampling policy; None = offline
    prompts_per_round: int = 8  # B: prompts per round
    samples_per_prompt: int = 4  # n: completions per prompt
    updates_per_batch: int = 1  # T: gradient steps on the same batch (sample reuse)
    offline_fraction: float = 0.0  # share of each online round's prompts taken from the offline data
    offline_prompts: int = 32  # size of the offline dataset, in prompts (x samples_per_prompt completions)
    minibatch_prompts: int | None = None  # M: prompts per gradient step, B/M steps a pass (None: M = B)
    dataset: str | None = None  # offline data from a recording (a run dir, rollouts.parquet, .parquet or .jsonl)
    dataset_order: str = "shuffled"  # recorded: the recording's rounds in order; shuffled: groups in random passes
    behaviour_from: str | None = None  # offline data sampled from this finished run's final policy

    @property
    def is_offline(self) -> bool:
        return self.sync_every is None

    def check(self) -> None:
        if self.sync_every is not None and self.sync_every < 1:
            raise ConfigError(
                f"sampling.sync_every={self.sync_every} is below 1",
                "use 1 for online, s > 1 for semi-online, or null (sampling=offline) for offline",
            )
        for key in ("prompts_per_round", "samples_per_prompt", "updates_per_batch", "offline_prompts"):
            if getattr(self, key) < 1:
                raise ConfigError(f"sampling.{key}={getattr(self, key)} is below 1", f"set sampling.{key} to 1 or more")
        if not 0.0 <= self.offline_fraction <= 1.0:
            raise ConfigError(
                f"sampling.offline_fraction={self.offline_fraction} is not a fraction", "use a value in [0, 1]"
            )
        if self.is_offline and self.offline_fraction not in (0.0, 1.0):
            raise ConfigError(
                "sampling.offline_fraction mixes offline data into online rounds, but this regime is offline",
                "set sampling.sync_every to an integer (online or semi-online) or offline_fraction=0",
            )

        if self.dataset_order not in ORDERS:
            raise ConfigError(
                f"sampling.dataset_order={self.dataset_order} is not an order", f"use one of {', '.join(ORDERS)}"
            )
        if self.dataset is not None and self.behaviour_from is not None:
            raise ConfigError(
                "sampling.dataset and sampling.behaviour_from both name the offline data",
                "set only one of them (the other to null)",
            )
        if self.dataset_order == "recorded" and (self.dataset is None or not self.is_offline):
            raise ConfigError(
                "sampling.dataset_order=recorded replays a recording's rounds, which needs sampling=offline and "
                "sampling.dataset",
                "set sampling=offline sampling.dataset=<run dir>, or sampling.dataset_order=shuffled",
            )
        if self.minibatch_prompts is not None and (
            self.minibatch_prompts < 1 or self.prompts_per_round % self.minibatch_prompts
        ):
            raise ConfigError(
                f"sampling.minibatch_prompts={self.minibatch_prompts} does not divide "
                f"sampling.prompts_per_round={self.prompts_per_round}",
                "choose a minibatch size M that divides the round's B prompts (or null for one step on the round)",
            )

    @property
    def steps_per_pass(self) -> int:
        """Gradient steps in one pass over a round: B / M (1 without minibatches)."""
        return 1 if self.minibatch_prompts is None else self.prompts_per_round // self.minibatch_prompts

    @property
    def offline_per_round(self) -> int:
        if self.is_offline:
            return self.prompts_per_round
        return int(round(self.offline_fraction * self.prompts_per_round))


@dataclass
class OfflineSource:
    """Offline data that storage read for the sampler (alignlab/storage/run.py): `draw(generator)` gives the
    dataset (a recording's rows, or samples of a saved policy drawn with the run's generator); `replay` gives a
    recording's rounds in order (`.rounds`, and `.round(index)`, 0-based), for dataset_order=recorded."""

    draw: Callable[[torch.Generator], Rollout] | None = None
    replay: object | None = None


class Sampler:
    """Produces each round's rollout and keeps the sampling policy in sync with the trained one."""

    def __init__(
        self, cfg: SamplingConfig, task, policy, generator: torch.Generator, source: OfflineSource | None = None
    ):
        self.cfg = cfg
        self.task = task
        self.policy = policy
        self.generator = generator
        # A stale copy is needed only when the sampler may lag the policy by more than one round's updates;
        # otherwise sampling from the live policy at the start of a round is the same thing, with no copy.
        self.frozen = None
        if not cfg.is_offline and cfg.sync_every > cfg.updates_per_batch * cfg.steps_per_pass:
            self.frozen = copy.deepcopy(policy)
            for p in self.frozen.parameters():
                p.requires_grad_(False)
        self.updates_since_sync = 0
        self.syncs = 0
        self.offline: Rollout | None = None
        self.recording = None  # a recording replayed round by round (dataset_order=recorded)
        self.replayed = 0
        if source is None and (cfg.dataset is not None or cfg.behaviour_from is not None):
            key = "sampling.dataset" if cfg.dataset is not None else "sampling.behaviour_from"
            raise ConfigError(
                f"{key} names data on disk, and no storage was given to read it",
                "pass hooks=[alignlab.storage.run.RunStorage()] to train()",
            )
        if cfg.dataset is not None and cfg.dataset_order == "recorded":
            self.recording = source.replay
        elif cfg.offline_per_round > 0:
            if source is not None:
                self.offline = source.draw(generator)
            else:
                self.offline = task.offline_data(cfg.offline_prompts, cfg.samples_per_prompt, generator)
            if self.offline.samples_per_prompt != cfg.samples_per_prompt:
                raise ConfigError(
                    f"the offline data has {self.offline.samples_per_prompt} completions per prompt, "
                    f"sampling.samples_per_prompt={cfg.samples_per_prompt}",
                    f"set sampling.samples_per_prompt={self.offline.samples_per_prompt}",
                )
            self.order = torch.randperm(self.offline.num_groups, generator=generator)
            self.position = 0

    def check_rounds(self, iterations: int) -> None:
        """A replayed recording must have a round for every iteration (checked before training starts)."""
        if self.recording is not None and len(self.recording.rounds) < iterations:
            self.recording.round(iterations - 1)  # raises the DataError that names the fix

    def _sync(self) -> None:
        if self.frozen is not None and self.updates_since_sync >= self.cfg.sync_every:
            self.frozen.load_state_dict(self.policy.state_dict())
            self.updates_since_sync = 0
            self.syncs += 1

    def _offline_groups(self, count: int) -> Rollout:
        groups = []
        while len(groups) < count:
            if self.position == len(self.order):
                self.order = torch.randperm(self.offline.num_groups, generator=self.generator)
                self.position = 0
            groups.append(self.order[self.position])
            self.position += 1
        n = self.cfg.samples_per_prompt
        idx = (torch.stack(groups)[:, None] * n + torch.arange(n)).flatten()
        return self.offline.select(idx, samples_per_prompt=n)

    def next_round(self) -> tuple[Rollout | None, list, object, object]:
        """(offline part or None, online prompts, online completions or None, the policy that sampled them).

        The sampling policy is returned so that importance ratios (PPO, GRPO) are taken against the policy
        that really produced the data: the live policy online, the stale copy semi-online.
        """
        cfg = self.cfg
        if self.recording is not None:
            self.replayed += 1
            return self.recording.round(self.replayed - 1), [], None, None
        offline = self._offline_groups(cfg.offline_per_round) if cfg.offline_per_round else None
        online = cfg.prompts_per_round - cfg.offline_per_round
        if online == 0:
            return offline, [], None, None
        self._sync()
        sampler = self.frozen if self.frozen is not None else self.policy
        prompts = self.task.sample_prompts(online, self.generator)
        with torch.no_grad():
            completions = sampler.sample(prompts, cfg.samples_per_prompt, self.generator)
        per_completion = [p for p in prompts for _ in range(cfg.samples_per_prompt)]
        return offline, per_completion, completions, sampler

    def after_update(self) -> None:
        self.updates_since_sync += 1

    def state_dict(self) -> dict:
        state = {"updates_since_sync": self.updates_since_sync, "syncs": self.syncs, "replayed": self.replayed}
        if self.frozen is not None:
            state["frozen"] = self.frozen.state_dict()
        if self.offline is not None:
            state["order"], state["position"] = self.order, self.position
        return state

    def load_state_dict(self, state: dict) -> None:
        self.updates_since_sync, self.syncs = state["updates_since_sync"], state["syncs"]
        self.replayed = state.get("replayed", 0)
        if self.frozen is not None:
            self.frozen.load_state_dict(state["frozen"])
        if self.offline is not None:
            self.order, self.position = state["order"], state["position"]


def minibatches_of(rollout: Rollout, cfg: SamplingConfig) -> list[Rollout]:
    """A round split into B/M minibatches of M prompt groups, in order (Tajwar et al. 2024, Sec. 5.3: at a
    fixed minibatch size a smaller round B means fresher data for the same number of samples and steps)."""
    if cfg.minibatch_prompts is None or cfg.minibatch_prompts >= rollout.num_groups:
        return [rollout]
    n = rollout.samples_per_prompt
    groups = torch.arange(rollout.num_groups).split(cfg.minibatch_prompts)
    return [rollout.select((g[:, None] * n + torch.arange(n)).flatten(), samples_per_prompt=n) for g in groups]
