"""Tier 3's policy pieces around tier 2's `CausalLMPolicy`: LoRA checkpoints, the adapters-off reference,
and data parallelism through `accelerate`.

The causal-LM policy itself (sampling loop, log-probs) is `alignlab.lm.policy.CausalLMPolicy`, shared with
tier 2: a tier-3 policy is the same object around a bigger model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from alignlab.core.types import LogProbs
from alignlab.lm.policy import CausalLMPolicy, TokenCompletions


class FullScalePolicy(CausalLMPolicy):
    """CausalLMPolicy whose checkpoint holds only the trainable weights when `adapter_only` (LoRA): a 7B
    policy's checkpoint is then its adapters (tens of MB), not the 14.5 GB frozen base."""

    def __init__(self, model: nn.Module, *, adapter_only: bool = False, **kwargs):
        super().__init__(model, **kwargs)
        self.adapter_only = adapter_only
        # FSDP or ZeRO-3: the module (full_scale/fsdp.py, full_scale/zero.py) that gathers the full state dicts
        self.sharded = None
        self.trainable_keys = frozenset(n for n, p in self.named_parameters() if p.requires_grad)

    def state_dict(self, *args, **kwargs) -> dict:
        if self.sharded and not args and not kwargs:
            return {f"model.{k}": v for k, v in self.sharded.full_state_dict(self.model).items()}
        state = super().state_dict(*args, **kwargs)
        if not self.adapter_only or args or kwargs.get("prefix"):
            return state
        return {k: v for k, v in state.items() if k in self.trainable_keys}

    def load_state_dict(self, state: dict, strict: bool = True, assign: bool = False):
        if self.sharded:
            state = {k.removeprefix("model."): v for k, v in state.items()}
            return self.sharded.load_full_state_dict(self.model, state)
        if not self.adapter_only:
            return super().load_state_dict(state, strict=strict, assign=assign)
        result = super().load_state_dict(state, strict=False, assign=assign)
        missing = set(result.missing_keys) & self.trainable_keys
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(
                f"LoRA checkpoint mismatch: missing adapter weights {sorted(missing)[:5]}, "
                f"unexpected keys {result.unexpected_keys[:5]}"
            )
        return result


class ShardedPolicy(FullScalePolicy):
    """A policy whose model is sharded across the processes (FSDP2, DeepSpeed ZeRO-3), which cannot be deep
    copied, so the policy's copy (semi-online's frozen sampler, alignlab/core/sampling.py) is `fresh()`
    loaded with this one's full weights: a collective, which every process makes when it builds its sampler.
    Under FSDP2 the copy is sharded the same way; under ZeRO-3 it is whole on every process, as ZeRO-3
    partitions only the models its engine holds."""

    def __init__(self, model: nn.Module, *, fresh: Callable[[], FullScalePolicy], **kwargs):
        super().__init__(model, **kwargs)
        self.fresh = fresh

    def __deepcopy__(self, memo) -> FullScalePolicy:
        clone = self.fresh()
        clone.load_state_dict(self.state_dict())
        return clone


class AdapterOffReference:
    """The reference of a LoRA policy: the same model with its adapters disabled (`peft`'s
    `disable_adapter()`), so the frozen base is held in memory once."""

    def __init__(self, policy: FullScalePolicy):
        self.policy = policy

    def sample(self, prompts: list, samples_per_prompt: int, generator: torch.Generator) -> TokenCompletions:
        with torch.no_grad(), self.policy.model.disable_adapter():
            return self.policy.sample(prompts, samples_per_prompt, generator)

    def logprobs(self, prompts: list, completions: TokenCompletions) -> LogProbs:
        with torch.no_grad(), self.policy.model.disable_adapter():
            return self.policy.logprobs(prompts, completions).detach()


class _LogProbs(nn.Module):
    """policy.logprobs as a forward pass, so that DistributedDataParallel can wrap it."""

    def __init__(self, policy: nn.Module):
        super().__init__()
        self.policy = policy

    def forward(self, prompts: list, completions: TokenCompletions) -> LogProbs:
        return self.policy.logprobs(prompts, completions)


class DistributedPolicy(nn.Module):
    """A policy trained on several processes with DDP (`accelerate`): the differentiable `logprobs` runs
    through `accelerator.prepare_model`, whose backward averages gradients across processes; sampling,
    checkpoints and evaluation use the plain policy, so a checkpoint is the same as a one-process one."""

    def __init__(self, policy: FullScalePolicy, accelerator):
        super().__init__()
        self.policy = policy
        # Kept outside the module tree: parameters() and state_dict() are the policy's own.
        object.__setattr__(self, "_ddp", accelerator.prepare_model(_LogProbs(policy)))

    def sample(self, prompts: list, samples_per_prompt: int, generator: torch.Generator) -> TokenCompletions:
        return self.policy.sample(prompts, samples_per_prompt, generator)

    def logprobs(self, prompts: list, completions: TokenCompletions) -> LogProbs:
        if torch.is_grad_enabled():
            return self._ddp(prompts, completions)
        return self.policy.logprobs(prompts, completions)

    def state_dict(self, *args, **kwargs) -> dict:
        return self.policy.state_dict(*args, **kwargs)

    def load_state_dict(self, state: dict, strict: bool = True, assign: bool = False):
        return self.policy.load_state_dict(state, strict=strict, assign=assign)

    def __deepcopy__(self, memo):  # a frozen sampler copy (semi-online) needs no gradient sync
        import copy

        return copy.deepcopy(self.policy, memo)


class WholeStateDict(nn.Module):
    """A module sharded across the processes (PPO's critic under FSDP2 or ZeRO-3) whose checkpoint holds its
    whole weights, as one process's would: state_dict and load_state_dict gather and scatter them with
    `sharding`'s functions (full_scale/fsdp.py or zero.py; collectives: every process makes them). A wrapper,
    because torch's FSDP state-dict functions call the sharded module's own state_dict."""

    def __init__(self, module: nn.Module, sharding):
        super().__init__()
        self.module = module
        self.sharding = sharding

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def state_dict(self, *args, **kwargs) -> dict:
        if args or kwargs:  # a parent module's recursion, not a checkpoint's call
            return super().state_dict(*args, **kwargs)
        return self.sharding.full_state_dict(self.module)

    def load_state_dict(self, state: dict, strict: bool = True, assign: bool = False):
        return self.sharding.load_full_state_dict(self.module, state)


def unwrap(policy) -> FullScalePolicy:
    return policy.policy if isinstance(policy, DistributedPolicy) else policy
