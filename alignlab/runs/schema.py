"""Typed schemas of the config groups (OmegaConf structured configs in Hydra's ConfigStore).

Each group's yamls name their schema in their defaults list, so Hydra checks every value's type and rejects
unknown keys while it composes, before anything runs: `train.lr=abc` or `force=maybe` is a one-line error
naming the key. Ranges are checked by the code that owns each value (`TrainConfig.check`,
`SamplingConfig.check`, `Objective.check`, the task constructors), which raise a ConfigError with the fix.

Adding a key is one line in the dataclass of its group:
- root and train: `RootConfig` here and `alignlab.core.train.TrainConfig`;
- sampling: `alignlab.core.sampling.SamplingConfig`;
- algo: the objective's own dataclass field (`alignlab/core/objectives/*.py`): its schema is derived from it;
- task: `BanditTaskConfig`, `SyntheticLMTaskConfig`, `FullScaleTaskConfig` here (kept apart from the tier
  packages so that composing a config imports no model code).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import sys
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from alignlab.core.sampling import SamplingConfig
from alignlab.core.train import TrainConfig
from alignlab.errors import ConfigError

SCHEMA_GROUP = "alignlab_schema"


@dataclass
class FindingsBudget:
    """`findings:`: the budgets of the findings experiments (conf/experiment/) on a task; each task sets its own."""

    seeds: int = 1  # seeds per configuration (an experiment's num_seeds), >= 1
    reuse_iterations: int = 100  # sample_reuse (T3): iterations at every T, >= 1
    prompt_budget: int = 2400  # batch_size (T4): prompts per run at every round size B, >= 1
    minibatch_prompts: int = 2  # batch_size (T4): M, prompts per gradient step, >= 1
    seeds_note: str | None = None  # why `seeds` is fewer than tier 1's 10 (a time budget): printed by each verdict


@dataclass
class RootConfig:
    """The top level of conf/config.yaml."""

    task: Any = MISSING  # conf/task/*.yaml, typed by its own schema
    algo: Any = MISSING  # conf/algo/*.yaml, typed by its objective's schema
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0  # seeds sampling, initialisation and evaluation
    num_seeds: int = 1  # seeds seed..seed+num_seeds-1 in one job, >= 1
    threads: int | None = None  # torch intra-op threads, >= 1 (None: torch's default)
    force: bool = False  # re-run a finished run
    plot: bool = True  # draw figure.png when the run ends
    experiment_name: str = "sweep"  # names the multirun directory
    findings: FindingsBudget = field(default_factory=FindingsBudget)
    record_rollouts: bool = False  # write every round's scored samples to rollouts.parquet
    save_policy: bool = False  # write the final policy to policy.pt (for init_from, sampling.behaviour_from)
    init_from: str | None = None  # start from this finished run's final policy
    init_reference: str = "keep"  # with init_from: keep | move (checked by alignlab/storage/warmstart.py)
    reward_mix: Any = None  # weights or a schedule of named rewards (checked by alignlab/core/reward_mix.py)
    logger: Any = None  # conf/logger/*.yaml, one entry per chosen tracker (checked by alignlab/runs/loggers.py)
    tuned: Any = None  # conf/tuned/*.yaml, tuned settings per objective (checked by alignlab/runs/tuned.py)
    tune: Any = None  # experiment=tune: the metric and the knobs searched (alignlab/science/tune.py)
    record_distribution: bool = True  # write the policy's distribution at each evaluation (distributions.csv)


@dataclass
class TaskConfig:
    """Keys every task has."""

    _target_: str = MISSING
    name: str = MISSING
    reward: str = MISSING  # a reward name, or a role of `roles` (alignlab/core/roles.py)
    roles: dict[str, str] = field(default_factory=dict)  # role (hard, easy, verifiable, ...) -> reward name


@dataclass
class BanditTaskConfig(TaskConfig):
    """conf/task/bandit*.yaml: bandits.BanditTask."""

    num_arms: int = 8  # >= 2
    reference: str = "skewed"
    skew: float = 0.6
    r1_peak: int = 7  # an arm: 0..num_arms-1
    r2_peak: int = 0
    width: float = 1.5  # > 0
    behaviour: str = "reference"
    optimum_beta: float = 0.1  # > 0


@dataclass
class SyntheticLMTaskConfig(TaskConfig):
    """conf/task/synthetic_llm.yaml: synthetic_llm.SyntheticLMTask."""

    extra_modules: ClassVar[tuple[str, ...]] = ("transformers",)  # the `lm` extra (make setup-lm), checked first

    reference_seed: int = 0
    cache_dir: str | None = None
    max_new_tokens: int = 24  # >= 2
    temperature: float = 1.0  # > 0
    top_p: float = 1.0  # (0, 1]
    n_layer: int = 2  # >= 1
    n_embd: int = 64  # >= 1, a multiple of n_head
    n_head: int = 4  # >= 1
    n_positions: int = 32
    corpus_size: int = 4096  # >= 1
    reference_steps: int | None = None  # >= 1
    length_shape: float = 7.0  # > 0
    length_scale: float = 2.0  # > 0
    max_corpus_length: int = 20
    target_length: int | None = None
    max_operand: int = 9
    corpus_error_rate: float = 0.3  # [0, 1]
    label_noise_beta: float = 0.0  # >= 0
    eval_prompts: int = 32  # >= 1
    eval_samples_per_prompt: int = 4  # >= 1
    logprob_batch_size: int | None = None  # >= 1
    optimum_beta: float = 0.1  # > 0
    response_vocabulary: str = "corpus"  # corpus | all


@dataclass
class FullScaleTaskConfig(TaskConfig):
    """conf/task/full_scale*.yaml: full_scale.FullScaleTask."""

    extra_modules: ClassVar[tuple[str, ...]] = ("transformers",)  # the `lm` extra (make setup-lm), checked first

    model: str = "smollm2"
    tokenizer: str | None = None
    chat_template: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    gradient_checkpointing: bool | None = None
    lora_r: int = 0  # >= 0
    lora_alpha: int = 32
    lora_dropout: float = 0.0  # [0, 1)
    lora_target_modules: Any = "all-linear"  # a string or a list of module names
    max_new_tokens: int = 24  # >= 1
    temperature: float = 1.0  # > 0
    top_p: float = 1.0  # (0, 1]
    max_context: int | None = None
    logprob_batch_size: int | None = None  # >= 1
    length_target: str = "short"
    reward_model: str | None = None
    judge: str = "self"
    judge_max_new_tokens: int = 128
    judge_scoring: str = "generate"  # generate (parse a verdict) | probabilities (E[score] over "0".."5")
    prompts: str | None = None
    pairs: str | None = None
    eval_prompts: int = 8  # >= 1
    eval_samples_per_prompt: int = 2  # >= 1
    win_rate: bool | None = None
    generation_backend: str = "transformers"
    distributed: str = "auto"
    deepspeed_config: str | None = None  # a DeepSpeed JSON whose zero_optimization block tier 3 trains with
    mixed_precision: bool | None = None  # null: fp32 master weights under bf16 compute for bf16 full fine-tuning
    num_problems: int = 128  # reward=arithmetic: generated problems, >= 2
    max_operand: int = 12  # reward=arithmetic: operands 1..max_operand, >= 2
    operations: str = "+"  # reward=arithmetic: any of + - *


@dataclass
class ContextualBanditTaskConfig(TaskConfig):
    """conf/task/bandit_contextual.yaml: bandits.ContextualBanditTask."""

    num_actions: int = 100  # >= 2
    context_dim: int = 100  # >= 1
    num_train_contexts: int = 100  # >= 1
    num_eval_contexts: int = 100  # >= 1
    feature_dim: int = 50  # >= 1
    hidden_dim: int = 256  # >= 1
    reference_samples: int = 10_000  # >= 1
    reference_epochs: int = 100  # >= 1
    reference_lr: float = 0.01  # > 0
    r1_peak: int = 70
    r2_peak: int = 20
    width: float = 10.0  # > 0
    context_seed: int = 0


TASK_SCHEMAS = {
    "bandit_contextual": ContextualBanditTaskConfig,
    "bandit": BanditTaskConfig,
    "synthetic_llm": SyntheticLMTaskConfig,
    "full_scale": FullScaleTaskConfig,
}


def objective_schema(cls: type) -> type:
    """The schema of an algo yaml: `_target_`, `name` and every field of the objective's dataclass, typed as
    the objective types it (so a new objective field is a new, typed config key)."""
    hints = typing.get_type_hints(cls)
    fields: list[tuple] = [
        ("_target_", str, field(default=MISSING)),
        ("name", str, field(default=MISSING)),
    ]
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        default = (
            field(default_factory=f.default_factory)
            if f.default_factory is not dataclasses.MISSING
            else field(default=MISSING if f.default is dataclasses.MISSING else f.default)
        )
        fields.append((f.name, hints[f.name], default))
    schema = dataclasses.make_dataclass(f"{cls.__name__}Config", fields)
    schema.__module__ = __name__  # a config typed by it pickles (--experimental-rerun reads config.pickle)
    return schema


def __getattr__(name: str) -> type:
    """`DPOConfig` and the other objective schemas, as module attributes, for unpickling a config typed by them."""
    from alignlab.core import objectives

    if name.endswith("Config") and name[: -len("Config")] in objectives.__all__:
        schema = globals()[name] = objective_schema(getattr(objectives, name[: -len("Config")]))
        return schema
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register() -> None:
    """Store every schema in Hydra's ConfigStore, where the yamls' defaults lists find them:
    `/alignlab_schema/root`, `/alignlab_schema/task/<tier>`, `/alignlab_schema/algo/<Objective class>`."""
    from alignlab.core import objectives

    store = ConfigStore.instance()
    store.store(group=SCHEMA_GROUP, name="root", node=RootConfig)
    for name, schema in TASK_SCHEMAS.items():
        store.store(group=f"{SCHEMA_GROUP}/task", name=name, node=schema)
    for name in objectives.__all__:
        if name not in ("Objective", "Targets"):
            store.store(group=f"{SCHEMA_GROUP}/algo", name=name, node=getattr(sys.modules[__name__], f"{name}Config"))


def schema_type(schema: type | None, key: str | None) -> str | None:
    """The declared type of `schema.key`, as a user reads it (`int`, `float | None`), or None."""
    if schema is None or key is None or not dataclasses.is_dataclass(schema):
        return None
    hint = typing.get_type_hints(schema).get(str(key))
    if hint is None:
        return None
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def _unknown_keys(node: DictConfig, prefix: str = "") -> list[str]:
    """Keys of `node` and its children that their schema does not declare (added with `+key=value`)."""
    schema = OmegaConf.get_type(node)
    declared = {f.name for f in dataclasses.fields(schema)} if dataclasses.is_dataclass(schema) else None
    unknown = []
    for key in node.keys():
        if declared is not None and key not in declared:
            unknown.append(f"{prefix}{key}")
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            unknown.extend(_unknown_keys(child, f"{prefix}{key}."))
    return unknown


LARGEST_INT = 2**63 - 1  # torch's and numpy's integers are 64-bit


def _numbers(node, prefix: str = ""):
    """(key, value) of every number in `node` (lists included, `hydra` left out), set where it stands: a value
    interpolated from another key is that key's."""
    keys = range(len(node)) if isinstance(node, ListConfig) else node.keys()
    for key in keys:
        if not prefix and key == "hydra":
            continue
        child = node._get_node(key)
        if child is None or child._is_missing() or child._is_none() or child._is_interpolation():
            continue
        name = f"{prefix}[{key}]" if isinstance(node, ListConfig) else f"{prefix}.{key}" if prefix else str(key)
        if isinstance(child, (DictConfig, ListConfig)):
            yield from _numbers(child, name)
        elif isinstance(child._value(), (int, float)) and not isinstance(child._value(), bool):
            yield name, child._value()


def check_numbers(cfg: DictConfig) -> None:
    """Every number of the config, whatever its key, so that a key added later is covered: a float is finite and
    not subnormal (dividing by it overflows), an integer fits in 64 bits."""
    for key, value in _numbers(cfg):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key}={value!r} is not a finite number", f"give {key} a finite value")
        if isinstance(value, float) and 0 < abs(value) < sys.float_info.min:
            raise ConfigError(
                f"{key}={value!r} is too close to 0 to compute with (below {sys.float_info.min:.3g}, where dividing "
                "by it overflows)",
                f"give {key} a value of magnitude {sys.float_info.min:.3g} or more",
            )
        if isinstance(value, int) and abs(value) > LARGEST_INT:
            raise ConfigError(f"{key}={value} does not fit in 64 bits", f"give {key} a value below 2**63")


def check_round_fits(cfg: DictConfig) -> None:
    """A round of more samples than this machine's memory holds at 32 bytes a sample (the least any tier keeps of
    one: its index, reward and log-probabilities under the policy and the reference, 8 bytes each) cannot run:
    refused before anything is written, not after a failed allocation."""
    sampling = cfg.sampling
    prompts = max(sampling.prompts_per_round, sampling.offline_prompts)
    samples = prompts * sampling.samples_per_prompt
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if samples * 32 > memory:
        key = "sampling.prompts_per_round" if prompts == sampling.prompts_per_round else "sampling.offline_prompts"
        raise ConfigError(
            f"{key}={prompts} x sampling.samples_per_prompt={sampling.samples_per_prompt} = {samples} samples a "
            f"round do not fit in this machine's {memory / 2**30:.0f} GiB of memory",
            f"lower {key}",
        )


def check_root(cfg: DictConfig) -> None:
    """The keys a job reads before its runs start: how many seeds, how many threads."""
    if cfg.num_seeds < 1:
        raise ConfigError(f"num_seeds={cfg.num_seeds} is below 1", "set num_seeds=1 or more")
    if cfg.threads is not None and cfg.threads < 1:
        raise ConfigError(f"threads={cfg.threads} is below 1", "set threads=1 or more, or threads=null")
    cpus = os.cpu_count() or 1
    if cfg.threads is not None and cfg.threads > cpus:
        raise ConfigError(
            f"threads={cfg.threads} is more than this machine's {cpus} CPUs (more threads only wait for each other)",
            f"set threads={cpus} or fewer, or threads=null",
        )


def check_config(cfg: DictConfig) -> None:
    """What composition cannot check: keys added with `+` that no schema declares, numbers that are not finite or
    do not fit, and the root's ranges."""
    unknown = [key for key in _unknown_keys(cfg) if not key.startswith("hydra.")]
    if unknown:
        key = unknown[0]
        last = key.rsplit(".", 1)[-1]
        parent = OmegaConf.select(cfg, key.rsplit(".", 1)[0]) if "." in key else cfg
        close = difflib.get_close_matches(last, [k for k in parent.keys() if k != last], n=1)
        hint = f"did you mean {key.rsplit('.', 1)[0] + '.' if '.' in key else ''}{close[0]}? " if close else ""
        raise ConfigError(f"unknown key '{key}': nothing reads it", f"{hint}remove +{key}")
    check_numbers(cfg)
    check_round_fits(cfg)
    check_root(cfg)
    for key in ("seeds", "reuse_iterations", "prompt_budget", "minibatch_prompts"):
        if cfg.findings[key] < 1:
            raise ConfigError(f"findings.{key}={cfg.findings[key]} is below 1", f"set findings.{key}=1 or more")
