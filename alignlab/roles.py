"""Rewards by role, so that one experiment runs on every tier (DESIGN.md, "Rewards are named by role").

Each task config names its rewards by role in `task.roles` (bandit: `{hard: r1, easy: r2}`):
- `hard`: the optimum is unlikely under the reference (bandit R1, synthetic `min_length`);
- `easy`: the optimum sits at the reference's mode (bandit R2, synthetic `mean_length`);
- `verifiable` / `nonverifiable`: a checked answer (arithmetic, math) or a learned or judged reward.
`task.reward` takes a role or a reward name; `resolve_reward` maps a role to its name before the task is built.
"""

from __future__ import annotations

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


def required_roles(experiment_cfg) -> set[str]:
    """The roles an experiment asks for: `task.reward` and every value it sweeps for `task.reward`."""
    wanted = set()
    reward = experiment_cfg.get("task", {}).get("reward")
    if reward is not None:
        wanted.add(str(reward))
    sweep = experiment_cfg.get("hydra", {}).get("sweeper", {}).get("params", {}).get("task.reward")
    if sweep is not None:
        wanted.update(v.strip() for v in str(sweep).split(","))
    return {r for r in wanted if r in ROLES}
