"""Tuned settings per objective: apply a `conf/tuned/*.yaml` file to a run.

A tuned-settings file (written by `alignlab-tune`, see alignlab/science/tune.py) says on which task, reward and sampling
regime it was tuned, and the best settings found for each objective:

    # @package tuned
    task: bandit
    reward: r1
    sampling: online
    settings:
      dpo: {train.lr: 0.12, algo.beta: 0.03}
      ...

`alignlab algo=dpo tuned=bandit_r1_online` runs DPO with those settings; the file's settings win over the task's
defaults. Rewards compare by name after roles are resolved (alignlab/core/roles.py): on the bandit, whose `hard` role
is r1, `task.reward=hard` and `task.reward=r1` both take a file tuned on r1. A file tuned for another task, reward
or regime, or without the objective, stops the run in one line.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from alignlab.errors import ConfigError


def tuned_name(task: str, reward: str, sampling: str) -> str:
    return f"{task}_{reward}_{sampling}"


def reward_name(reward: str, roles) -> str:
    """A reward's name: a role (hard) mapped through the task's `roles` ({hard: r1}), a name left as it is."""
    return str((roles or {}).get(reward, reward))


def apply_tuned(cfg: DictConfig) -> DictConfig:
    """`cfg` with the tuned settings of its objective applied (a copy), or `cfg` itself without `tuned`."""
    tuned = OmegaConf.select(cfg, "tuned", default=None)
    if tuned is None:
        return cfg
    name = tuned.get("name") or tuned_name(tuned.task, tuned.reward, tuned.sampling)
    roles = OmegaConf.select(cfg, "task.roles", default=None)
    asked = str(cfg.task.reward)
    reward = reward_name(asked, roles)
    there_reward = reward_name(tuned.reward, roles) if tuned.task == cfg.task.name else str(tuned.reward)
    here = {"task": cfg.task.name, "task.reward": reward, "sampling": cfg.sampling.name}
    there = {"task": tuned.task, "task.reward": there_reward, "sampling": tuned.sampling}
    if here != there:
        shown = {**here, "task.reward": asked if asked == reward else f"{asked} ({reward})"}
        wanted = " ".join(f"{k}={v}" for k, v in shown.items())
        fix = " ".join(f"{k}={v}" for k, v in {**here, "task.reward": asked}.items())
        raise ConfigError(
            f"tuned={name} was tuned for {' '.join(f'{k}={v}' for k, v in there.items())}, not for {wanted}",
            f"tune this setting with `alignlab-tune {fix}`, or drop tuned={name}",
        )
    algo = cfg.algo.name
    if algo not in tuned.settings:
        raise ConfigError(
            f"tuned={name} has no settings for algo={algo} (it has {', '.join(tuned.settings)})",
            f"tune it with `alignlab-tune {' '.join(f'{k}={v}' for k, v in there.items())} --algos {algo}`, "
            f"or drop tuned={name}",
        )
    cfg = cfg.copy()
    for key, value in tuned.settings[algo].items():
        if OmegaConf.select(cfg, key, default="<missing>") == "<missing>":
            raise ConfigError(f"tuned={name} sets {key}, which algo={algo} does not have", "re-run alignlab-tune")
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg
