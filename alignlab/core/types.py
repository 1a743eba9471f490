"""The small vocabulary every tier speaks: log-probs, rollouts, and the policy / task protocols.

A tier supplies a `Task` (DESIGN.md): a policy factory, a reference, a reward, prompts, offline data and an
evaluator. The core never looks inside prompts or completions: it only indexes and concatenates them, so a
completion can be a bandit arm (a LongTensor of arm ids) or a batch of token sequences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn


@dataclass
class LogProbs:
    """Per-token log-probabilities of N completions, padded to length L.

    On a bandit L = 1 (a completion is one arm); on a language model `mask` marks completion tokens.
    """

    tokens: Tensor  # [N, L] log pi(y_t | x, y_<t)
    mask: Tensor  # [N, L] 1.0 on completion tokens, 0.0 on padding

    def sum(self) -> Tensor:
        """Sequence log-probability log pi(y | x) = sum_t log pi(y_t | ...), shape [N]."""
        return (self.tokens * self.mask).sum(-1)

    def __getitem__(self, idx: Tensor) -> LogProbs:
        return LogProbs(self.tokens[idx], self.mask[idx])

    def detach(self) -> LogProbs:
        return LogProbs(self.tokens.detach(), self.mask)

    @staticmethod
    def cat(parts: list[LogProbs]) -> LogProbs:
        length = max(p.tokens.shape[1] for p in parts)

        def pad(x: Tensor) -> Tensor:
            return torch.nn.functional.pad(x, (0, length - x.shape[1]))

        return LogProbs(torch.cat([pad(p.tokens) for p in parts]), torch.cat([pad(p.mask) for p in parts]))


def select(items: Any, idx: Tensor) -> Any:
    """Index prompts or completions: tensors and tier types by `items[idx]`, lists element-wise."""
    if isinstance(items, (list, tuple)):
        return [items[i] for i in idx.tolist()]
    return items[idx]


def concat(parts: list[Any]) -> Any:
    """Concatenate prompts or completions of the same kind (tensors, lists, or a tier type with `.cat`)."""
    first = parts[0]
    if isinstance(first, Tensor):
        return torch.cat(parts)
    if isinstance(first, (list, tuple)):
        return [x for p in parts for x in p]
    return type(first).cat(parts)


@dataclass
class Rollout:
    """Scored samples for a round: `num_prompts` groups of `samples_per_prompt` completions, prompt-major.

    Completion i answers prompt `prompts[i]`; samples i // n share a prompt (a group). Log-probs under the
    reference (`ref_logps`) and under the behaviour policy that produced the samples (`old_logps`: the
    sampler, or the policy recorded with offline data) are filled in when the objective needs them.
    """

    prompts: list  # one per completion (length N)
    completions: Any  # indexable by a LongTensor, length N
    rewards: Tensor  # [N]
    samples_per_prompt: int
    ref_logps: LogProbs | None = None
    old_logps: LogProbs | None = None
    extras: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.rewards.shape[0]

    @property
    def num_groups(self) -> int:
        return len(self) // self.samples_per_prompt

    def grouped(self, x: Tensor) -> Tensor:
        """View a per-completion tensor as [groups, samples_per_prompt]."""
        return x.view(self.num_groups, self.samples_per_prompt, *x.shape[1:])

    def select(self, idx: Tensor, samples_per_prompt: int = 1) -> Rollout:
        return Rollout(
            prompts=select(self.prompts, idx),
            completions=select(self.completions, idx),
            rewards=self.rewards[idx],
            samples_per_prompt=samples_per_prompt,
            ref_logps=None if self.ref_logps is None else self.ref_logps[idx],
            old_logps=None if self.old_logps is None else self.old_logps[idx],
            extras={k: v[idx] for k, v in self.extras.items()},
        )

    @staticmethod
    def cat(parts: list[Rollout]) -> Rollout:
        n = parts[0].samples_per_prompt
        if any(p.samples_per_prompt != n for p in parts):
            raise ValueError("cannot concatenate rollouts with different samples_per_prompt")

        def cat_logps(name: str) -> LogProbs | None:
            values = [getattr(p, name) for p in parts]
            return None if any(v is None for v in values) else LogProbs.cat(values)

        keys = set.intersection(*(set(p.extras) for p in parts))
        return Rollout(
            prompts=concat([p.prompts for p in parts]),
            completions=concat([p.completions for p in parts]),
            rewards=torch.cat([p.rewards for p in parts]),
            samples_per_prompt=n,
            ref_logps=cat_logps("ref_logps"),
            old_logps=cat_logps("old_logps"),
            extras={k: torch.cat([p.extras[k] for p in parts]) for k in keys},
        )


@runtime_checkable
class Policy(Protocol):
    """A trainable generator of completions.

    `sample` returns len(prompts) * samples_per_prompt completions, prompt-major. `logprobs` scores given
    completions (one prompt per completion) and is differentiable with respect to `parameters()`.
    """

    def sample(self, prompts: list, samples_per_prompt: int, generator: torch.Generator) -> Any: ...

    def logprobs(self, prompts: list, completions: Any) -> LogProbs: ...

    def parameters(self): ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> Any: ...


class Reward(Protocol):
    """prompts (one per completion), completions -> scores [N]."""

    def __call__(self, prompts: list, completions: Any) -> Tensor: ...


class Task(Protocol):
    """What a tier supplies (DESIGN.md): a policy, a reference, a reward, prompts, data and an evaluator."""

    name: str

    def make_policy(self) -> Policy:
        """A fresh trainable policy, initialised at the reference."""

    def make_reference(self) -> Policy:
        """The frozen reference policy (or an object that gives its log-probs)."""

    def make_value_model(self) -> nn.Module:
        """A value model V(prompt, completion prefix) -> [N, L] for PPO (per token position)."""

    def reward(self, prompts: list, completions: Any) -> Tensor: ...

    def sample_prompts(self, count: int, generator: torch.Generator) -> list:
        """Draw `count` training prompts."""

    def offline_data(self, num_prompts: int, samples_per_prompt: int, generator: torch.Generator) -> Rollout:
        """A fixed, scored dataset (from the reference, a behaviour policy or a file)."""

    def evaluate(self, policy: Policy, generator: torch.Generator) -> dict[str, float]:
        """Evaluation of the policy: at least `reward` and `kl_ref`."""
