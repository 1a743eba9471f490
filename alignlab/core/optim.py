"""Adam for CPU parameters without torch.optim's start-up cost: bit for bit torch.optim.Adam, in its format.

Why it exists: in torch 2.13 every torch.optim optimizer imports `torch._dynamo` (the compiler, about 0.9 s
of CPU) the first time it is built, stepped, zeroed or saved: `add_param_group`, `zero_grad`, `state_dict`
and `load_state_dict` are wrapped by `torch._disable_dynamo`, and `step` by `_use_grad_for_differentiable`,
both of which import it. A bandit run trains in 0.2 s; that import was a third of every `alignlab` call.

The contract (tests/test_optim.py checks each point against torch.optim.Adam):
- `step` performs the operations of torch's single-tensor Adam (`_single_tensor_adam` in torch/optim/adam.py,
  the path torch takes for CPU tensors by default) in the same order, on the settings alignlab uses (no
  weight decay, amsgrad, maximize, capturable or differentiable), so that parameters and moments are equal
  bit for bit after any number of steps.
- `state_dict()` returns torch's format (`state`: parameter index -> `step`, `exp_avg`, `exp_avg_sq`;
  `param_groups`: every torch.optim.Adam setting, then `params`), and `load_state_dict` reads it the way
  torch's does: a checkpoint written with either optimizer resumes identically with the other.
`make_optimizer` picks this Adam when every parameter is a real floating-point CPU tensor and
torch.optim.Adam otherwise (on a GPU torch's foreach and fused kernels are faster).
"""

from __future__ import annotations

import copy
import math
from collections import defaultdict
from collections.abc import Callable, Iterable

import torch

# torch.optim.Adam's settings, in the order its param groups list them; only the defaults are supported here.
TORCH_ADAM_SETTINGS = (
    "lr",
    "betas",
    "eps",
    "weight_decay",
    "amsgrad",
    "maximize",
    "foreach",
    "capturable",
    "differentiable",
    "fused",
    "decoupled_weight_decay",
)
UNSUPPORTED = {
    "weight_decay": 0,
    "amsgrad": False,
    "maximize": False,
    "capturable": False,
    "differentiable": False,
    "decoupled_weight_decay": False,
}


def _scalar_dtype() -> torch.dtype:
    """The dtype of `step`, as torch.optim.optimizer._get_scalar_dtype gives it without fused kernels."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


# The smallest float32 that torch's vectorised CPU sqrt takes at full speed: on zeros and numbers below about
# 1.2e-38 it is 15-50x slower (0.16 ms against 0.008 ms for 65,536 zeros), and the second moment of a network
# with dead ReLU units is mostly exact zeros (91% of the contextual bandit's 256x256 layer).
FAST_SQRT_FLOOR = 2.0**-125


def _denominator(exp_avg_sq: torch.Tensor, bias_correction2_sqrt: float, eps: float) -> torch.Tensor:
    """(exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps), bit for bit. Where exp_avg_sq is below the floor,
    both the root of the floor and the true root, divided by the bias correction, are under half a unit in the
    last place of eps, so both sums round to eps exactly: the floor changes no bit and avoids the slow path. The
    floor is taken only when that margin holds (2**-26 eps: eps / 2**24 is the smallest half-ulp of a float32), and
    on tensors large enough for the saving to pay for one more call (a bandit's 8 logits are not)."""
    if exp_avg_sq.numel() >= 4096 and math.sqrt(FAST_SQRT_FLOOR) / bias_correction2_sqrt < eps * 2.0**-26:
        root = exp_avg_sq.clamp_min(FAST_SQRT_FLOOR).sqrt_()  # in place: each element keeps its kernel path
    else:
        root = exp_avg_sq.sqrt()
    return root.div_(bias_correction2_sqrt).add_(eps)


class Adam:
    """torch.optim.Adam(params, lr, betas, eps) for CPU tensors, without importing torch._dynamo."""

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        for p in params:
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is {torch.typename(p)}")
            if not (p.is_leaf or p.retains_grad):
                raise ValueError("can't optimize a non-leaf Tensor")
        self.defaults = {
            "lr": lr,
            "betas": (betas[0], betas[1]),
            "eps": eps,
            **{key: UNSUPPORTED.get(key) for key in TORCH_ADAM_SETTINGS[3:]},
        }
        self.param_groups: list[dict] = [{"params": params, **self.defaults}]
        self.state: defaultdict[torch.Tensor, dict] = defaultdict(dict)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients, as torch.optim.Optimizer.zero_grad does without foreach kernels."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    if p.grad.grad_fn is not None:
                        p.grad.detach_()
                    else:
                        p.grad.requires_grad_(False)
                    p.grad.zero_()

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One Adam step on every parameter that has a gradient: torch's `_single_tensor_adam`, op for op."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():  # torch's step runs with grad mode set to `differentiable` (False)
            for group in self.param_groups:
                self._step_group(group)
        return loss

    def _step_group(self, group: dict) -> None:
        lr, eps = group["lr"], group["eps"]
        beta1, beta2 = group["betas"]
        for param in group["params"]:
            grad = param.grad
            if grad is None:
                continue
            if grad.is_sparse:
                raise RuntimeError("Adam does not support sparse gradients, please consider SparseAdam instead")
            state = self.state[param]
            if len(state) == 0:  # lazy initialization, as torch's Adam._init_group
                state["step"] = torch.tensor(0.0, dtype=_scalar_dtype(), device="cpu")
                state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            exp_avg, exp_avg_sq, step_t = state["exp_avg"], state["exp_avg_sq"], state["step"]

            step_t += 1
            # decay the first and second moment running averages
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)

            step = step_t.item()
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            step_size = lr / bias_correction1
            bias_correction2_sqrt = bias_correction2**0.5
            denom = _denominator(exp_avg_sq, bias_correction2_sqrt, eps)
            param.addcdiv_(exp_avg, denom, value=-step_size)

    def state_dict(self) -> dict:
        """torch.optim.Optimizer.state_dict's format: parameters by index, the state's tensors not copied."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            start = len(index)
            index.update({id(p): i for i, p in enumerate(group["params"], start) if id(p) not in index})
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {(index[id(k)] if isinstance(k, torch.Tensor) else k): v for k, v in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state dict of this optimizer or of torch.optim.Adam, as torch.optim.Optimizer does."""
        saved_groups = copy.deepcopy(state_dict["param_groups"])
        if len(self.param_groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"]) for g, s in zip(self.param_groups, saved_groups, strict=True)):
            raise ValueError(
                "loaded state dict contains a parameter group that doesn't match the size of optimizer's group"
            )
        for saved in saved_groups:  # torch's Adam.__setstate__ fills settings that older state dicts lack
            for key in ("amsgrad", "maximize", "capturable", "differentiable", "decoupled_weight_decay"):
                saved.setdefault(key, False)
            saved.setdefault("foreach", None)
            saved.setdefault("fused", None)
            unsupported = {k: saved[k] for k, v in UNSUPPORTED.items() if saved.get(k) != v}
            unsupported.update({k: saved[k] for k in ("foreach", "fused") if saved[k]})
            if unsupported:
                raise ValueError(
                    f"this state dict is of a torch.optim.Adam with settings that alignlab.core.optim.Adam does not "
                    f"implement ({unsupported}): load it into torch.optim.Adam"
                )
        id_map = {
            saved_id: p
            for s, g in zip(saved_groups, self.param_groups, strict=True)
            for saved_id, p in zip(s["params"], g["params"], strict=True)
        }
        state: defaultdict[torch.Tensor, dict] = defaultdict(dict)
        for key, value in state_dict["state"].items():
            if key in id_map:
                param = id_map[key]
                state[param] = {name: _cast(param, name, v) for name, v in value.items()}
            else:
                state[key] = value
        for saved, group in zip(saved_groups, self.param_groups, strict=True):
            saved["params"] = group["params"]
            if "param_names" in group and "param_names" not in saved:
                saved["param_names"] = group["param_names"]
        self.param_groups = saved_groups
        self.state = state


def _cast(param: torch.Tensor, name: str, value):
    """A saved state value on the parameter's device and dtype (the step as it is), as torch loads it."""
    if isinstance(value, torch.Tensor):
        if name == "step":
            return value
        return value.to(dtype=param.dtype, device=param.device) if param.is_floating_point() else value.to(param.device)
    if name == "step":  # a state dict of a torch older than 1.12 holds the step as a number
        return torch.tensor(float(value), dtype=_scalar_dtype())
    return value


def make_optimizer(params: list[torch.Tensor], lr: float) -> Adam | torch.optim.Adam:
    """Adam over `params`: this module's when they are all real floating-point CPU tensors (the path where it
    equals torch's bit for bit), torch.optim.Adam otherwise (a GPU uses torch's foreach or fused kernels)."""
    params = list(params)
    on_cpu = all(p.device.type == "cpu" and p.is_floating_point() and not p.is_complex() for p in params)
    return Adam(params, lr=lr) if params and on_cpu else torch.optim.Adam(params, lr=lr)
