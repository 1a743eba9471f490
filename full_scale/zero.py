"""Full fine-tuning on DeepSpeed ZeRO (stage 2: Adam states and gradients sharded; stage 3: the weights too).

Used when `task.distributed` is `deepspeed`, `deepspeed_zero2` or `deepspeed_zero3`, or when `accelerate
launch --config_file full_scale/accelerate/deepspeed_zero2.yaml` (or `_zero3`) starts the processes: accelerate
then hands the config's `deepspeed_config` over as ACCELERATE_DEEPSPEED_* variables, read here. The core's
algorithm is unchanged: `DeepSpeedEngine` is an engine (alignlab/core/engine.py) whose step is DeepSpeed's
`backward` (gradients reduce-scattered as they are produced) and `step` (clipping by the global norm, Adam on
this process's partition, the updated weights gathered back).

The optimizer is torch.optim.Adam with alignlab's settings, passed to `deepspeed.initialize`, so a run on
DeepSpeed takes the same update as one process on TorchEngine. DeepSpeed's own Adams are C++ ops that it
compiles on first use (FusedAdam, DeepSpeedCPUAdam for offloading): a config that would need one is refused.
Precision is tier 3's own (fp32 master weights under bf16 autocast, task.mixed_precision), so DeepSpeed's
fp16/bf16 blocks are refused too: there is one precision scheme for every engine.

On CPU processes DeepSpeed's communication goes through torch.distributed (gloo). Its TorchBackend also
JIT-compiles a shared-memory all-reduce op (`deepspeed_shm_comm`, about 100 s with ninja on this 2-core
machine, and a build killed half-way leaves a lock that the next build waits on forever): that op serves only
DeepSpeed's inference all-reduce, so it is marked unavailable before the backend starts.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from alignlab.errors import ConfigError

MODES = {"deepspeed": None, "deepspeed_zero2": 2, "deepspeed_zero3": 3}
ADAM_STATES = ("exp_avg", "exp_avg_sq")


def deepspeed_requested(distributed: str) -> bool:
    launched = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    return distributed in MODES or (distributed == "auto" and launched)


def env_flag(variable: str) -> str:
    return os.environ.get(variable, "").lower()


def zero_settings(distributed: str, lora: bool, config_file: str | None = None) -> dict | None:
    """The `zero_optimization` block this run trains with, from `task.distributed` and `task.deepspeed_config`,
    or from the accelerate config (its deepspeed_config keys, or the DeepSpeed JSON its deepspeed_config_file
    names); None when the run is not on DeepSpeed. Every setting tier 3 cannot honour is refused in one line,
    before any process group starts; the package is looked for last, so a wrong config fails the same way
    with or without it."""
    if not deepspeed_requested(distributed):
        if config_file is not None:
            raise ConfigError(
                f"task.deepspeed_config={config_file} is set, but this run does not train on DeepSpeed "
                f"(task.distributed={distributed})",
                "set task.distributed=deepspeed, or drop task.deepspeed_config",
            )
        return None
    if lora:
        raise ConfigError(
            "DeepSpeed ZeRO (task.distributed=deepspeed or a DeepSpeed accelerate config) shards a full "
            "fine-tune, but task.lora_r > 0 trains adapters over a frozen base that doubles as the reference",
            "use full_scale/accelerate/ddp.yaml for LoRA, or set task.lora_r=0",
        )
    zero: dict = {}
    path = config_file or os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE")
    if path:
        source = "task.deepspeed_config" if config_file else "deepspeed_config_file (the accelerate config)"
        zero = dict(read_config_file(Path(path), source).get("zero_optimization", {}))
    stage = MODES.get(distributed)
    if stage is not None and zero.get("stage", stage) != stage:
        raise ConfigError(
            f"task.distributed={distributed} trains with ZeRO stage {stage}, but {path} sets stage {zero['stage']}",
            "set task.distributed=deepspeed to take the stage from the file, or make them agree",
        )
    if stage is None:
        stage = int(zero.get("stage", os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")))
    if stage not in (1, 2, 3):
        raise ConfigError(
            f"ZeRO stage {stage} in the DeepSpeed config: tier 3 trains with ZeRO stage 1, 2 or 3",
            "set zero_stage: 2 or 3 (full_scale/accelerate/deepspeed_zero2.yaml, deepspeed_zero3.yaml), "
            "or use ddp.yaml for plain data parallelism",
        )
    for variable, key in (
        ("ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE", "offload_optimizer_device"),
        ("ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE", "offload_param_device"),
    ):
        if env_flag(variable) not in ("", "none"):
            raise offload_refusal(f"{key}: {os.environ[variable]}")
    for key in ("offload_optimizer", "offload_param"):
        device = zero.get(key, {}).get("device", "none") if isinstance(zero.get(key), dict) else "none"
        if str(device).lower() != "none":
            raise offload_refusal(f"zero_optimization.{key}.device: {device}")
    if env_flag("ACCELERATE_GRADIENT_ACCUMULATION_STEPS") not in ("", "1"):
        raise ConfigError(
            f"gradient_accumulation_steps: {os.environ['ACCELERATE_GRADIENT_ACCUMULATION_STEPS']} in the accelerate "
            "config: the core takes one step per minibatch",
            "set gradient_accumulation_steps: 1, and size the step with sampling.minibatches",
        )
    if env_flag("ACCELERATE_GRADIENT_CLIPPING") not in ("", "none"):
        raise ConfigError(
            f"gradient_clipping: {os.environ['ACCELERATE_GRADIENT_CLIPPING']} in the accelerate config is not "
            "honoured by tier 3: the core clips at train.max_grad_norm",
            "remove gradient_clipping from the accelerate config, and set train.max_grad_norm",
        )
    if env_flag("ACCELERATE_MIXED_PRECISION") not in ("", "no"):
        raise ConfigError(
            f"mixed_precision: {os.environ['ACCELERATE_MIXED_PRECISION']} in the accelerate config is not honoured "
            "by tier 3",
            'set mixed_precision: "no" there: tier 3\'s precision is task.dtype and task.mixed_precision '
            "(bf16 compute over fp32 master weights by default for a bf16 full fine-tune)",
        )
    if env_flag("ACCELERATE_DEEPSPEED_ZERO3_INIT") == "true":
        raise ConfigError(
            "zero3_init_flag: true in the accelerate config: tier 3 loads the model whole, then ZeRO-3 partitions it",
            "set zero3_init_flag: false",
        )
    if importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(
            "DeepSpeed training (task.distributed=deepspeed or a DeepSpeed accelerate config) needs the "
            "deepspeed package, which is not installed",
            "pip install 'alignlab[deepspeed]', or use full_scale/accelerate/fsdp.yaml (task.distributed=fsdp)",
        )
    zero["stage"] = stage
    # accelerate's "auto" values are filled in by the HF Trainer; DeepSpeed itself rejects them
    return {k: v for k, v in zero.items() if v != "auto"}


def offload_refusal(setting: str) -> ConfigError:
    return ConfigError(
        f"{setting} in the DeepSpeed config: offloading needs DeepSpeed's C++ CPU Adam in place of the core's Adam",
        "set it to none (shard across more processes instead)",
    )


def read_config_file(path: Path, source: str) -> dict:
    """A DeepSpeed JSON config (`source` names the setting that points at it), refused if it sets what the
    core owns."""
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"{source}: {path} is not a readable JSON file ({error})",
            f"point {source} at a DeepSpeed JSON config, or drop it",
        ) from None
    owned = {
        "optimizer": "the core's Adam (train.lr) is the optimizer",
        "scheduler": "the core keeps the learning rate constant (train.lr)",
        "fp16": "tier 3's precision is task.dtype and task.mixed_precision",
        "bf16": "tier 3's precision is task.dtype and task.mixed_precision",
        "gradient_clipping": "the core clips at train.max_grad_norm",
    }
    for key, why in owned.items():
        value = config.get(key)
        if value is None or value == "auto" or (isinstance(value, dict) and value.get("enabled") in (False, "auto")):
            continue
        raise ConfigError(f"{key} in {path} is not honoured by tier 3: {why}", f"remove {key} from {path}")
    steps = config.get("gradient_accumulation_steps", 1)
    if steps not in (1, "auto"):
        raise ConfigError(
            f"gradient_accumulation_steps: {steps} in {path}: the core takes one step per minibatch",
            f"remove gradient_accumulation_steps from {path}, and size the step with sampling.minibatches",
        )
    return config


def skip_shm_op() -> None:
    """Mark DeepSpeed's shared-memory comm op unavailable on CPU processes (see the module docstring)."""
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


class DeepSpeedEngine:
    """The update through a DeepSpeed ZeRO engine over `modules` (the policy's model, and PPO's critic).

    Its state_dict is torch.optim.Adam's format with full tensors (`step`, `exp_avg`, `exp_avg_sq` per
    parameter, gathered from every partition: a collective), so a checkpoint is one file that any world size,
    and TorchEngine, resumes."""

    def __init__(
        self, modules: list[nn.Module], params: list[torch.Tensor], lr: float, max_grad_norm: float | None, zero: dict
    ):
        import deepspeed

        if not torch.cuda.is_available():
            skip_shm_op()
        self.params = params
        config = {
            "train_micro_batch_size_per_gpu": 1,  # not used: the core forms the batches
            "gradient_accumulation_steps": 1,
            "gradient_clipping": max_grad_norm or 0.0,
            "zero_optimization": zero,
            "zero_allow_untested_optimizer": True,  # torch.optim.Adam on fp32 partitions: ZeRO's default case
            "steps_per_print": 2**62,
        }
        self.engine, self.optimizer, _, _ = deepspeed.initialize(
            model=nn.ModuleList(modules), optimizer=torch.optim.Adam(params, lr=lr), config=config
        )
        self.adam = self.engine.basic_optimizer
        self.refresh = False

    def step(self, loss: torch.Tensor) -> None:
        if self.refresh:  # weights loaded from a checkpoint since the last step: the masters follow them
            self.optimizer.refresh_fp32_params()
            self.refresh = False
        self.engine.backward(loss)
        self.engine.step()  # clip, Adam on this partition, gather the weights, zero the gradients

    def steps_taken(self) -> int:
        states = [s for s in self.adam.state.values() if "step" in s]
        return int(states[0]["step"]) if states else 0

    def state_dict(self) -> dict:
        from deepspeed.utils import safe_get_full_optimizer_state

        steps = self.steps_taken()
        state = {}
        if steps:
            for i, p in enumerate(self.params):
                state[i] = {"step": torch.tensor(float(steps))}
                for key in ADAM_STATES:
                    full = safe_get_full_optimizer_state(p, key).detach().cpu()
                    state[i][key] = full.reshape(getattr(p, "ds_shape", p.shape))  # ZeRO-3 empties p itself
        group = {k: v for k, v in self.adam.param_groups[0].items() if k != "params"}
        return {"state": state, "param_groups": [{**group, "params": list(range(len(self.params)))}]}

    def create_adam_states(self) -> None:
        """Adam's states of this process's flat partitions, zero, as torch.optim.Adam would create them at its
        first step (a fresh engine has none yet, and a checkpoint's are written into them)."""
        zero = self.optimizer
        flats = getattr(zero, "fp32_partitioned_groups_flat", None) or zero.single_partition_of_fp32_groups  # 3; 1-2
        for flat in flats:
            if not self.adam.state.get(flat):
                self.adam.state[flat] = {
                    "step": torch.tensor(0.0),
                    **{key: torch.zeros_like(flat, memory_format=torch.preserve_format) for key in ADAM_STATES},
                }
        # ZeRO-1/2 map each parameter onto its slice of the flat states once they exist (after the first step)
        link = getattr(zero, "_lazy_init_hp_params_optimizer_state", None)
        if link is not None:
            link()

    def load_state_dict(self, state: dict) -> None:
        entries = state["state"]
        if entries:
            self.create_adam_states()
        for i, p in enumerate(self.params):
            entry = entries.get(i, entries.get(str(i)))
            if entry is None:
                continue
            for key in ADAM_STATES:
                set_full_state(p, entry[key].float(), key)
        steps = [float(e["step"]) for e in entries.values()]
        if steps:
            for flat in self.adam.state.values():
                flat["step"] = torch.tensor(steps[0])
        self.refresh = True


def set_full_state(p: torch.Tensor, value: torch.Tensor, key: str) -> None:
    """Write Adam's state `key` of parameter `p` from its whole tensor into this process's partition."""
    from deepspeed.utils import safe_set_full_optimizer_state, safe_set_local_optimizer_state

    if not hasattr(p, "ds_tensor"):  # ZeRO-1/2
        safe_set_full_optimizer_state(p, value, key)
        return
    # ZeRO-3 pads a parameter to a multiple of the world size; its own setter of whole states does not (it
    # fails on the last process for a parameter of 1 element), so this process's slice is cut here
    size, group = p.ds_tensor.numel(), p.ds_process_group
    padded = torch.nn.functional.pad(value.flatten(), (0, size * dist.get_world_size(group) - value.numel()))
    safe_set_local_optimizer_state(p, padded.narrow(0, size * dist.get_rank(group), size), key)


def full_state_dict(model: nn.Module) -> dict:
    """The whole weights of a ZeRO-3 model on the CPU (a collective: every process calls it)."""
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(model.parameters())):
        return {k: v.detach().cpu().clone() for k, v in nn.Module.state_dict(model).items()}


def load_full_state_dict(model: nn.Module, state: dict) -> None:
    """Load whole weights into a ZeRO-3 model: every process loads the same state, rank 0's is kept."""
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=0):
        nn.Module.load_state_dict(model, state)
