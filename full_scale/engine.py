"""Tier 3's training engines and precision (the Engine protocol: alignlab/core/engine.py).

Precision. Full fine-tuning in a 16-bit dtype runs as mixed precision by default: the trainable weights are
held in fp32 (the master weights, so Adam's two moments are fp32 too: 16 B/param with the gradient) and every
forward runs under `torch.autocast` in the 16-bit dtype, as accelerate's and DeepSpeed's bf16 modes do. A
bf16 parameter cannot take an update below its spacing: at lr 3e-5 most weights of magnitude above about
0.01 would never move. The frozen base (the reference) stays in the 16-bit dtype.

Engines. One process: alignlab's plain torch engine. Several processes (`accelerate launch`): the
`accelerate` Accelerator owns the backward (its gradient averaging) and the clipping.
"""

from __future__ import annotations

import torch

from alignlab.core.optim import make_optimizer
from alignlab.errors import ConfigError


def check_mixed_precision(requested: bool | None, dtype: torch.dtype, lora: bool) -> bool:
    """Whether the task trains fp32 master weights under `dtype` compute: by default, full fine-tuning in
    bfloat16. A request that cannot be honoured is refused in one line."""
    if requested is None:
        return dtype == torch.bfloat16 and not lora
    if not requested:
        return False
    if dtype != torch.bfloat16:
        raise ConfigError(
            f"task.mixed_precision=true computes in bfloat16 over fp32 weights, but task.dtype is {dtype}",
            "set task.dtype=bfloat16 (float16 would need a loss scaler), or drop task.mixed_precision",
        )
    if lora:
        raise ConfigError(
            "task.mixed_precision=true is for full fine-tuning: with task.lora_r > 0 peft already keeps the "
            "adapters in fp32 over the frozen 16-bit base",
            "drop task.mixed_precision, or set task.lora_r=0",
        )
    return True


def check_zero_precision(requested: bool | None, dtype: torch.dtype) -> None:
    """Under DeepSpeed ZeRO, 16-bit weights without fp32 masters are refused in one line: ZeRO-1/2 keep
    16-bit master weights only when offloading to DeepSpeed's C++ CPU Adam (refused by full_scale/zero.py),
    so the 16-bit weights and Adam states asked for would silently be stepped as an fp32 copy."""
    if dtype == torch.float32 or (requested is None and dtype == torch.bfloat16) or requested:
        return
    name = str(dtype).removeprefix("torch.")
    setting = "with task.mixed_precision=false" if requested is False else "(mixed precision is for bfloat16)"
    raise ConfigError(
        f"task.dtype={name} {setting} trains {name} weights and Adam states, but DeepSpeed ZeRO steps an fp32 "
        "copy of every partition, so it would not take that update",
        "drop task.mixed_precision with task.dtype=bfloat16 (fp32 master weights under bf16 compute), "
        "or set task.dtype=float32",
    )


class AccelerateEngine:
    """The update on several processes through `accelerate`: its backward, clipping and optimizer wrapper."""

    def __init__(self, accelerator, params: list[torch.Tensor], lr: float, max_grad_norm: float | None):
        self.accelerator = accelerator
        self.params = params
        self.max_grad_norm = max_grad_norm
        self.optimizer = accelerator.prepare_optimizer(make_optimizer(params, lr=lr))

    def step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        if self.max_grad_norm is not None:
            self.accelerator.clip_grad_norm_(self.params, self.max_grad_norm)
        self.optimizer.step()

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)
