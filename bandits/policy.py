"""The bandit policy: free logits over K arms, and PPO's value model (one number: a bandit has one state)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from alignlab.core.types import LogProbs


class SoftmaxPolicy(nn.Module):
    """pi(a) = softmax(logits)[a]. Prompts are ignored: the bandit has a single context."""

    def __init__(self, logits: Tensor, trainable: bool = True):
        super().__init__()
        self.logits = nn.Parameter(logits.detach().clone().float(), requires_grad=trainable)

    def probs(self) -> Tensor:
        return torch.softmax(self.logits, dim=-1)

    def sample(self, prompts: list, samples_per_prompt: int, generator: torch.Generator) -> Tensor:
        """len(prompts) * samples_per_prompt arm ids, prompt-major."""
        return torch.multinomial(
            self.probs().detach(), len(prompts) * samples_per_prompt, replacement=True, generator=generator
        )

    def logprobs(self, prompts: list, completions: Tensor) -> LogProbs:
        """A completion is one token: log-probs of shape [N, 1] with a mask of ones."""
        tokens = torch.log_softmax(self.logits, dim=-1)[completions][:, None]
        return LogProbs(tokens, torch.ones_like(tokens))


class StateValue(nn.Module):
    """V(x): a single learned scalar, broadcast to every completion's one token position."""

    def __init__(self):
        super().__init__()
        self.value = nn.Parameter(torch.zeros(()))

    def forward(self, prompts: list, completions: Tensor) -> Tensor:
        return self.value.expand(len(completions), 1)
