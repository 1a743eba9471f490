"""A finished run's final policy, reused: as the start of another run (`init_from=<run dir>`, the two phases of
a curriculum) or as the behaviour policy that samples offline data (`sampling.behaviour_from=<run dir>`, the
final online policy of Tang et al. 2024's data-quality ablation, arXiv:2405.08448).

A run saves its final policy as `policy.pt` when `save_policy=true`; a run is finished when its
`summary.json` exists.
"""

from __future__ import annotations

import copy
import io
from pathlib import Path

import torch

from alignlab.errors import ConfigError
from alignlab.storage.rundir import SUMMARY, atomic_write_bytes

POLICY = "policy.pt"
REFERENCE_MODES = ("keep", "move")


def save_policy(run_dir: Path, task, policy) -> Path:
    buffer = io.BytesIO()
    torch.save({"task": getattr(task, "name", ""), "policy": policy.state_dict()}, buffer)
    path = Path(run_dir) / POLICY
    atomic_write_bytes(path, buffer.getvalue())
    return path


def check_finished(run_dir: str | Path, key: str) -> Path:
    """The policy file of a finished run, or a one-line ConfigError naming `key` and the fix."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{key}={run_dir} is not a run directory", f"give the directory of a finished run to {key}")
    if not (run_dir / SUMMARY).exists():
        raise ConfigError(
            f"{key}={run_dir} is a run that did not finish (no {SUMMARY})",
            "finish it first (re-run its command: it resumes) or give a finished run",
        )
    if not (run_dir / POLICY).exists():
        raise ConfigError(
            f"{key}={run_dir} saved no final policy ({POLICY})", "re-run it with save_policy=true force=true"
        )
    return run_dir / POLICY


def load_policy(run_dir: str | Path, task, key: str):
    """A fresh policy of `task` holding the final weights of the finished run `run_dir`."""
    path = check_finished(run_dir, key)
    saved = torch.load(path, map_location="cpu", weights_only=False)
    if saved.get("task") and saved["task"] != task.name:
        raise ConfigError(
            f"{key}={run_dir} is a policy of task {saved['task']}, this run's task is {task.name}",
            f"give a run of {task.name}, or run with task={saved['task']}",
        )
    policy = task.make_policy()
    try:
        policy.load_state_dict(saved["policy"])
    except (RuntimeError, KeyError) as error:
        first = str(error).strip().splitlines()[0]
        raise ConfigError(
            f"{key}={run_dir} holds a policy of another model ({first})",
            "give a run of the same task and model settings",
        ) from None
    return policy


def frozen_copy(policy):
    reference = copy.deepcopy(policy)
    for p in reference.parameters():
        p.requires_grad_(False)
    return reference


def make_policies(task, init_from: str | None = None, init_reference: str = "keep") -> tuple[object, object]:
    """(policy, reference): the task's, or with `init_from` the finished run's policy, and a reference that is
    the task's (`keep`) or a frozen copy of that policy (`move`)."""
    if init_reference not in REFERENCE_MODES:
        raise ConfigError(f"init_reference={init_reference} is not a reference mode", "use init_reference=keep or move")
    if init_from is None:
        return task.make_policy(), task.make_reference()
    policy = load_policy(init_from, task, "init_from")
    return policy, frozen_copy(policy) if init_reference == "move" else task.make_reference()


def sample_offline(task, policy, num_prompts: int, samples_per_prompt: int, generator: torch.Generator):
    """`num_prompts` groups of samples from `policy`, scored, with the policy's log-probs as behaviour."""
    from alignlab.core.train import score
    from alignlab.core.types import Rollout

    prompts = task.sample_prompts(num_prompts, generator)
    with torch.no_grad():
        completions = policy.sample(prompts, samples_per_prompt, generator)
        per_completion = [p for p in prompts for _ in range(samples_per_prompt)]
        old_logps = policy.logprobs(per_completion, completions)
    rewards = score(task, per_completion, completions)
    return Rollout(per_completion, completions, rewards, samples_per_prompt, old_logps=old_logps.detach())
