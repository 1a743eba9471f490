"""The typed schemas: every config composes into a typed node, and the schemas match the code they configure."""

from __future__ import annotations

import dataclasses
import importlib
import inspect

import pytest
from hydra import compose
from omegaconf import OmegaConf

from alignlab.runs.schema import TASK_SCHEMAS, RootConfig
from tests.test_config import options


@pytest.mark.parametrize("group", ["algo", "task", "sampling"])
def test_every_option_composes_into_a_typed_node(hydra_ctx, group):
    for option in options(group):
        cfg = compose("config", overrides=[f"{group}={option}"])
        assert OmegaConf.get_type(cfg) is RootConfig
        assert dataclasses.is_dataclass(OmegaConf.get_type(cfg[group])), f"{group}={option} has no schema"


@pytest.mark.parametrize("algo", options("algo"))
def test_an_algo_schema_is_its_objectives_fields(hydra_ctx, algo):
    cfg = compose("config", overrides=[f"algo={algo}"])
    module, name = cfg.algo._target_.rsplit(".", 1)
    objective = getattr(importlib.import_module(module), name)
    fields = {f.name for f in dataclasses.fields(objective) if f.init}
    assert set(cfg.algo.keys()) == fields | {"_target_", "name"}


@pytest.mark.parametrize("tier", TASK_SCHEMAS)
def test_a_task_schema_is_its_constructors_arguments(tier):
    if tier == "full_scale":
        pytest.importorskip("transformers")
    target = {
        "bandit": "bandits.BanditTask",
        "bandit_contextual": "bandits.ContextualBanditTask",
        "synthetic_llm": "synthetic_llm.SyntheticLMTask",
    }.get(tier, "full_scale.FullScaleTask")
    module, name = target.rsplit(".", 1)
    parameters = set(inspect.signature(getattr(importlib.import_module(module), name)).parameters)
    # `roles` (where the schema has it) is turned into a reward name before the task is built (alignlab.core.roles)
    schema = {f.name for f in dataclasses.fields(TASK_SCHEMAS[tier])} - {"_target_", "roles"}
    parameters -= {"roles"}  # a constructor may accept it and ignore it (bandits.ContextualBanditTask)
    assert schema == parameters, f"only in the schema: {schema - parameters}; only in the code: {parameters - schema}"


def test_a_wrong_type_and_an_unknown_key_fail_while_composing(hydra_ctx):
    from hydra.errors import ConfigCompositionException

    for override in ("train.lr=abc", "force=maybe", "algo.betta=1", "task.num_arms=1.5"):
        with pytest.raises(ConfigCompositionException):
            compose("config", overrides=[override])
    assert compose("config", overrides=["force=no"]).force is False


def float_keys(node, prefix: str = ""):
    """(parent node, key, full name) of every key its schema types as a float (list elements included)."""
    from omegaconf import DictConfig, ListConfig
    from omegaconf.nodes import FloatNode

    keys = range(len(node)) if isinstance(node, ListConfig) else node.keys()
    for key in keys:
        child = node._get_node(key)
        name = f"{prefix}[{key}]" if isinstance(node, ListConfig) else f"{prefix}.{key}" if prefix else str(key)
        if isinstance(child, (DictConfig, ListConfig)) and not child._is_none() and not child._is_missing():
            yield from float_keys(child, name)
        elif isinstance(child, FloatNode):
            yield node, key, name


@pytest.mark.parametrize("group", ["task", "algo", "sampling", "data", "mix", "logger", "tuned", "experiment"])
def test_every_float_key_of_every_option_refuses_nan_and_infinities(hydra_ctx, group):
    """Found from the schemas, not listed: a float key added later is covered without a new row."""
    import math
    import re

    from alignlab.errors import ConfigError
    from alignlab.runs.schema import check_config

    checked = set()
    for option in options(group):
        cfg = compose("config", overrides=[f"{group}={option}"])
        for parent, key, name in float_keys(cfg):
            if name in checked:
                continue
            checked.add(name)
            original = parent._get_node(key)._value()
            for value in (math.nan, math.inf, -math.inf):
                parent[key] = value
                with pytest.raises(ConfigError, match=re.escape(f"{name}={value!r} is not a finite number")):
                    check_config(cfg)
            parent[key] = original
            check_config(cfg)  # and back to the option's own value, which passes
    assert {"train.lr", "train.max_grad_norm"} <= checked, checked
    if group == "algo":
        assert {"algo.beta", "algo.thresholds[0]", "algo.clip_epsilon", "algo.kl_coef"} <= checked
    if group == "task":
        assert {"task.optimum_beta", "task.label_noise_beta", "task.reference_lr", "task.top_p"} <= checked
