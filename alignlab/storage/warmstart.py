"""A finished run's final policy, reused: as the start of another run (`init_from=<run dir>`, the two phases of
a curriculum) or as the behaviour policy that samples offline data (`sampling.behaviour_from=<run dir>`, the
final online policy of Tang et al. 2024's data-quality ablation, arXiv:2405.08448).

A run saves its final policy as `policy.pt` when `save_policy=true`, protected as a checkpoint is: a plain
`torch.load(path, weights_only=True)` file with its SHA-256 beside it (`policy.pt.sha256`). A run is finished
when its `summary.json` exists.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import torch

from alignlab.core.train import score
from alignlab.core.types import Rollout
from alignlab.errors import ConfigError
from alignlab.storage.rundir import SUMMARY, checkpoint_bytes, load_torch, read_verified, write_with_checksum

POLICY = "policy.pt"
REFERENCE_MODES = ("keep", "move")


def save_policy(run_dir: Path, task, policy) -> Path:
    path = Path(run_dir) / POLICY
    write_with_checksum(path, checkpoint_bytes({"task": getattr(task, "name", ""), "policy": policy.state_dict()}))
    return path


def read_policy(path: Path, key: str) -> tuple[dict, bytes]:
    """(the saved dict, its bytes) of a policy file, or a one-line DataError naming it and `key`."""
    fix = f"re-run the run of {key} with save_policy=true force=true"
    data = read_verified(path, f"{key}: the saved policy", fix)
    saved = load_torch(data, path, f"{key}: the saved policy", fix)
    if not isinstance(saved, dict) or "policy" not in saved:
        raise ConfigError(f"{key}: {path} is not a policy saved by alignlab (no 'policy' entry)", fix)
    return saved, data


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


def load_policy(run_dir: str | Path, task, key: str) -> tuple[object, str]:
    """(a fresh policy of `task` holding the final weights of the finished run `run_dir`, the SHA-256 of the file
    they were read from)."""
    saved, data = read_policy(check_finished(run_dir, key), key)
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
    return policy, hashlib.sha256(data).hexdigest()


def frozen_copy(policy):
    reference = copy.deepcopy(policy)
    for p in reference.parameters():
        p.requires_grad_(False)
    return reference


def check_reference_mode(init_from: str | None, init_reference: str) -> None:
    if init_reference not in REFERENCE_MODES:
        raise ConfigError(f"init_reference={init_reference} is not a reference mode", "use init_reference=keep or move")
    if init_reference == "move" and init_from is None:
        raise ConfigError(
            "init_reference=move moves the reference to the policy of init_from, and init_from is not set",
            "set init_from=<a finished run saved with save_policy=true>, or init_reference=keep",
        )


def make_policies(task, init_from: str | None = None, init_reference: str = "keep") -> tuple[object, object]:
    """(policy, reference): the task's, or with `init_from` the finished run's policy, and a reference that is
    the task's (`keep`) or a frozen copy of that policy (`move`)."""
    check_reference_mode(init_from, init_reference)
    if init_from is None:
        return task.make_policy(), task.make_reference()
    policy, _ = load_policy(init_from, task, "init_from")
    return policy, frozen_copy(policy) if init_reference == "move" else task.make_reference()


def sample_offline(task, policy, num_prompts: int, samples_per_prompt: int, generator: torch.Generator):
    """`num_prompts` groups of samples from `policy`, scored, with the policy's log-probs as behaviour."""
    prompts = task.sample_prompts(num_prompts, generator)
    with torch.no_grad():
        completions = policy.sample(prompts, samples_per_prompt, generator)
        per_completion = [p for p in prompts for _ in range(samples_per_prompt)]
        old_logps = policy.logprobs(per_completion, completions)
    rewards = score(task, per_completion, completions)
    return Rollout(per_completion, completions, rewards, samples_per_prompt, old_logps=old_logps.detach())
