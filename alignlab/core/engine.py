"""The training engine: what turns a loss into a parameter update.

train() computes each loss and hands it to an engine, which owns everything after it: building the
optimizer, zeroing the gradients, the backward pass, gradient clipping, the step, mixed precision, and the
optimizer's part of a checkpoint. Tiers 1 and 2 use `TorchEngine` (alignlab's Adam, plain `loss.backward()`);
a task that trains on a distributed engine (tier 3 under `accelerate launch`: DDP, FSDP2, DeepSpeed ZeRO)
supplies its own through `task.make_engine(params, lr, max_grad_norm)`, so the loop never owns a distributed
optimizer by hand.
"""

from __future__ import annotations

from typing import Protocol

import torch

from alignlab.core.optim import make_optimizer


class Engine(Protocol):
    def step(self, loss: torch.Tensor) -> None:
        """One update from `loss`: zero the gradients, backward, clip, optimizer step."""

    def state_dict(self) -> dict:
        """The optimizer's state, for a checkpoint."""

    def load_state_dict(self, state: dict) -> None:
        """Restore what state_dict() returned."""


class TorchEngine:
    """Adam on one process (alignlab.core.optim.make_optimizer) with a plain `loss.backward()`. Its
    state_dict is the optimizer's own, so checkpoints keep torch.optim.Adam's format."""

    def __init__(self, params: list[torch.Tensor], lr: float, max_grad_norm: float | None):
        self.params = params
        self.max_grad_norm = max_grad_norm
        self.optimizer = make_optimizer(params, lr=lr)

    def step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.optimizer.step()

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)


def make_engine(task, params: list[torch.Tensor], lr: float, max_grad_norm: float | None) -> Engine:
    """The task's engine when it has one (`task.make_engine`), else the plain torch one."""
    factory = getattr(task, "make_engine", None)
    if factory is not None:
        return factory(params, lr, max_grad_norm)
    return TorchEngine(params, lr, max_grad_norm)
