"""Rewards by role, so that one experiment runs on every tier (DESIGN.md, "Rewards are named by role").

Each task config names its rewards by role in `task.roles` (bandit: `{hard: r1, easy: r2}`):
- `hard`: the optimum is unlikely under the reference (bandit R1, synthetic `min_length`);
- `easy`: the optimum sits at the reference's mode (bandit R2, synthetic `mean_length`);
- `verifiable` / `nonverifiable`: a checked answer (arithmetic, math) or a learned or judged reward.
`task.reward` takes a role or a reward name; `resolve_reward` maps a role to its name before the task is built.
"""

from __future__ import annotations

import importlib.resources

from omegaconf import OmegaConf

from alignlab.errors import ConfigError

ROLES = ("hard", "easy", "verifiable", "nonverifiable")


def resolve_reward(task_cfg: dict) -> dict:
    """The task config with `reward` mapped from a role to a reward name, and without `roles` (which the task
    class does not take). A role the task does not have is a ConfigError that lists the roles it has."""
    task_cfg = dict(task_cfg)
    roles = dict(task_cfg.pop("roles", None) or {})
    reward = task_cfg.get("reward")
    if reward in roles:
        task_cfg["reward"] = roles[reward]
    elif reward in ROLES:
        have = ", ".join(f"{role} ({name})" for role, name in roles.items()) or "none"
        raise ConfigError(
            f"task={task_cfg.get('name', '?')} has no '{reward}' reward (its roles: {have})",
            "choose another task, or a role or reward name this task has, e.g. "
            f"task.reward={next(iter(roles), 'NAME')}",
        )
    return task_cfg


def mix_roles(reward_mix) -> set[str]:
    """The roles among a `reward_mix`'s components (its weights, each domain's and each phase's weights)."""
    if not isinstance(reward_mix, dict):
        return set()
    tables = [reward_mix.get("weights"), *(reward_mix.get("domains") or {}).values()]
    tables += [phase.get("weights") for phase in reward_mix.get("schedule") or [] if isinstance(phase, dict)]
    return {str(name) for table in tables if isinstance(table, dict) for name in table if name in ROLES}


def mix_preset(name: str) -> dict:
    """conf/mix/<name>.yaml's `reward_mix` (empty when there is no such preset)."""
    path = importlib.resources.files("alignlab.conf") / "mix" / f"{name}.yaml"
    if not path.is_file():
        return {}
    return OmegaConf.to_container(OmegaConf.load(str(path))).get("reward_mix") or {}


def required_roles(experiment_cfg, overrides: tuple[str, ...] = ()) -> set[str]:
    """The roles an experiment asks for: `task.reward` and every value it sweeps for `task.reward`, and every
    role a reward mixture of it trains or evaluates on: its own `reward_mix`, and the conf/mix/ presets it selects
    (defaults list) or sweeps (`mix: a,b`). `overrides` (`key=value`, as a finding passes them) count too."""
    sweep = dict(experiment_cfg.get("hydra", {}).get("sweeper", {}).get("params", {}) or {})
    for override in overrides:
        key, _, value = override.partition("=")
        sweep[key.lstrip("+~")] = value
    rewards = {str(experiment_cfg.get("task", {}).get("reward"))}
    if sweep.get("task.reward") is not None:
        rewards.update(v.strip() for v in str(sweep["task.reward"]).split(","))
    wanted = {r for r in rewards if r in ROLES} | mix_roles(experiment_cfg.get("reward_mix"))
    presets = [str(v).strip() for v in str(sweep.get("mix", "")).split(",") if str(v).strip()]
    for entry in experiment_cfg.get("defaults") or []:
        if isinstance(entry, dict):
            presets += [str(v) for k, v in entry.items() if k.split()[-1].strip("/") == "mix" and v is not None]
    for preset in presets:
        wanted |= mix_roles(mix_preset(preset))
    return wanted
