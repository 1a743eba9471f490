"""Full fine-tuning sharded with PyTorch's FSDP2 (`torch.distributed.fsdp.fully_shard`).

Each decoder layer (the model's `_no_split_modules` classes, as accelerate's TRANSFORMER_BASED_WRAP picks
them) and then the whole model become FSDP units: parameters, gradients and Adam states are sharded across
the processes, gathered one layer at a time for the forward and the backward, and the gradient is averaged
by reduce-scatter. The policy calls the model as before, so sampling, scoring, the self-judge and
evaluation need no change, with one rule: every process must make the same number of forward calls. Sampling
therefore stops when every process's completions have ended (CausalLMPolicy.stop_group).

Used when `task.distributed=fsdp`, or when `accelerate launch --config_file full_scale/accelerate/fsdp.yaml`
starts the processes (it sets ACCELERATE_USE_FSDP). The sharding is torch's own rather than accelerate's
FSDP plugin because accelerate runs FSDP only on GPUs: on CPU processes it silently falls back to DDP, and
torch's FSDP2 runs on CPU processes too (gloo), which is how the tests check it.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

from alignlab.core.engine import TorchEngine
from alignlab.errors import ConfigError


def fsdp_requested(distributed: str) -> bool:
    launched_with_fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    return distributed == "fsdp" or (distributed == "auto" and launched_with_fsdp)


def check_fsdp(lora: bool, fsdp_version: str | None = None) -> None:
    """The FSDP settings tier 3 cannot honour, refused in one line."""
    if lora:
        raise ConfigError(
            "FSDP (task.distributed=fsdp or an FSDP accelerate config) shards a full fine-tune, but task.lora_r > 0 "
            "trains adapters over a frozen base that doubles as the reference",
            "use full_scale/accelerate/ddp.yaml for LoRA, or set task.lora_r=0",
        )
    version = fsdp_version if fsdp_version is not None else os.environ.get("FSDP_VERSION", "2")
    if version != "2":
        raise ConfigError(
            f"fsdp_version={version} in the accelerate config: tier 3 shards with FSDP2 (fully_shard)",
            "set fsdp_version: 2 (full_scale/accelerate/fsdp.yaml)",
        )
    # accelerate launch passes its config file's settings as environment variables: those tier 3 does not run
    for variable, key, fix in UNHONOURED:
        if os.environ.get(variable, "false").lower() not in ("false", "no", "0", ""):
            raise ConfigError(f"{key}: {os.environ[variable]} in the accelerate config is not honoured by tier 3", fix)


UNHONOURED = (
    ("FSDP_OFFLOAD_PARAMS", "fsdp_offload_params", "set fsdp_offload_params: false (use more GPUs instead)"),
    (
        "FSDP_ACTIVATION_CHECKPOINTING",
        "fsdp_activation_checkpointing",
        "set it to false: task.gradient_checkpointing does it (on by default on a GPU)",
    ),
    (
        "ACCELERATE_MIXED_PRECISION",
        "mixed_precision",
        'set mixed_precision: "no" there: tier 3\'s precision is task.dtype and task.mixed_precision '
        "(bf16 compute over fp32 master weights by default for a bf16 full fine-tune)",
    ),
)


def start_processes(device: str) -> tuple[int, int, torch.device]:
    """Join (or, on one process, create) the process group: (rank, world size, this process's device)."""
    cuda = device != "cpu" and torch.cuda.is_available()
    if not dist.is_initialized():
        backend = "nccl" if cuda else "gloo"
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            dist.init_process_group(backend)
        else:  # FSDP on one device (the GPU benchmark): a group of one, no rendezvous needed
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    rank, world = dist.get_rank(), dist.get_world_size()
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def shard(model: nn.Module, root: nn.Module | None = None) -> nn.Module:
    """fully_shard every decoder layer of `model`, then `root` (default: the model itself)."""
    from torch.distributed.fsdp import fully_shard

    layer_classes = set(getattr(model, "_no_split_modules", None) or ())
    for module in model.modules():
        if type(module).__name__ in layer_classes:
            fully_shard(module)
    fully_shard(root if root is not None else model)
    return model


def full_state_dict(model: nn.Module) -> dict:
    """The unsharded weights on the CPU (a collective: every process calls it; rank 0 alone receives them, the
    others an empty dict, so that no other process holds a whole copy of the model)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_state_dict(model: nn.Module, state: dict) -> None:
    """Load rank 0's unsharded weights, broadcast to every process's shards (a collective): the other ranks'
    `state` is not read, which lets full_state_dict's empty dict stand for the weights there (semi-online's
    sampler refresh, alignlab/core/sampling.py, loads the policy's state_dict into its copy)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))


def all_done(done: bool) -> bool:
    """Whether every process's generation has ended (a collective)."""
    flag = torch.tensor([1.0 if done else 0.0])
    if dist.get_backend() == "nccl":
        flag = flag.cuda()
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


class FSDPEngine(TorchEngine):
    """TorchEngine's step over the sharded parameters: torch.optim.Adam (it takes DTensors), the backward's
    reduce-scatter averaging the gradient, clipping by the global norm. Its state_dict is the unsharded
    optimizer state, keyed by parameter name, so a checkpoint is one file that any world size resumes."""

    def __init__(self, modules: list[nn.Module], params: list[torch.Tensor], lr: float, max_grad_norm: float | None):
        self.owner = nn.ModuleList(modules)  # the named parameters the optimizer state is keyed by
        self.params = params
        self.max_grad_norm = max_grad_norm
        self.optimizer = torch.optim.Adam(params, lr=lr)

    def state_dict(self) -> dict:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_optimizer_state_dict(self.owner, self.optimizer, options=options)

    def load_state_dict(self, state: dict) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True)
        set_optimizer_state_dict(self.owner, self.optimizer, state, options=options)
