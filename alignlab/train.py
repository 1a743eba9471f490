"""The training loop, identical on every tier.

loop: [every s updates: refresh the sampler from the policy]
      draw B prompts x n samples (or the next offline batch) -> score with the reward
      -> build targets (pairs / filtered set / weights / advantages)
      -> T gradient steps of the objective
      -> metrics row (reward, KL to reference, log-probs of chosen/rejected, ...)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from alignlab.errors import ConfigError, RewardError
from alignlab.objectives.base import Objective
from alignlab.rundir import CHECKPOINT, METRICS, load_checkpoint, save_checkpoint, write_metrics
from alignlab.sampling import Sampler, SamplingConfig
from alignlab.types import Rollout


@dataclass
class TrainConfig:
    iterations: int = 300  # rounds of (sample, score, T updates)
    lr: float = 0.05  # Adam learning rate
    max_grad_norm: float | None = 1.0  # clip the gradient norm (None: no clipping)
    eval_every: int = 1  # evaluate the policy every this many iterations (and at the end)
    checkpoint_every: int = 0  # write a checkpoint every this many iterations (0: never)
    progress: bool = True  # show a progress bar (it appears only if the run lasts more than 2 s)

    def check(self) -> None:
        if self.lr <= 0:
            raise ConfigError(f"train.lr={self.lr} must be positive", "set train.lr to a value > 0, e.g. train.lr=0.05")
        if self.iterations < 1:
            raise ConfigError(f"train.iterations={self.iterations} is below 1", "set train.iterations=1 or more")
        if self.eval_every < 1:
            raise ConfigError(f"train.eval_every={self.eval_every} is below 1", "set train.eval_every=1 or more")


def check_rewards(rewards, count: int, source: str) -> torch.Tensor:
    """Rewards as a float tensor of `count` finite scores, or a RewardError naming `source` and the fix."""
    rewards = torch.as_tensor(rewards, dtype=torch.float32)
    if rewards.shape != (count,):
        raise RewardError(
            f"{source} returned shape {tuple(rewards.shape)} for {count} completions",
            "return one score per completion (a 1-D tensor)",
        )
    bad = ~torch.isfinite(rewards)
    if bad.any():
        raise RewardError(
            f"{source} returned NaN or inf for {int(bad.sum())} of {count} completions",
            "make the reward function return finite numbers (check divisions and empty completions)",
        )
    return rewards


def score(task, prompts: list, completions) -> torch.Tensor:
    """The task's reward, checked: a tensor of one finite score per completion."""
    return check_rewards(task.reward(prompts, completions), len(prompts), "the reward")


def check_run(objective: Objective, sampling: SamplingConfig, cfg: TrainConfig) -> None:
    """Every check of a run's settings that needs no task: the CLI calls it before it builds the task (which
    may load a model), train() again for callers that come straight to it."""
    sampling.check()
    cfg.check()
    objective.check(sampling.samples_per_prompt)


def old_logps_are_current(sampler: Sampler, objective: Objective) -> bool:
    """Online, one update per batch, no offline share: the behaviour policy is the policy about to be updated,
    so its log-probs are the update's own forward pass, detached; the no-grad forward that would compute them
    first is skipped (as TRL's GRPOTrainer does), unless the targets read them before the update (PPO)."""
    cfg = sampler.cfg
    return (
        sampler.frozen is None
        and not cfg.is_offline
        and cfg.offline_per_round == 0
        and cfg.updates_per_batch == 1
        and not objective.needs_old_logps_before_update
    )


def collect(sampler: Sampler, task, objective: Objective, reference) -> Rollout:
    """1. Draw this round's data and 2. score it; 3. attach the log-probs the objective reads.

    `old_logps` are the log-probs of the behaviour policy that produced each sample (the sampler online or
    semi-online; for offline data, what the dataset recorded, else the reference), so that PPO's and GRPO's
    ratios pi / pi_old correct for off-policy data instead of ignoring it.
    """
    offline, prompts, completions, behaviour = sampler.next_round()
    parts = [] if offline is None else [offline]
    if completions is not None:
        online = Rollout(prompts, completions, score(task, prompts, completions), sampler.cfg.samples_per_prompt)
        with torch.no_grad():
            if objective.needs_reference:
                online.ref_logps = reference.logprobs(prompts, completions)
            if objective.needs_old_logps and not old_logps_are_current(sampler, objective):
                online.old_logps = behaviour.logprobs(prompts, completions)
        parts.append(online)
    return parts[0] if len(parts) == 1 else Rollout.cat(parts)


def train(
    task,
    objective: Objective,
    sampling: SamplingConfig,
    cfg: TrainConfig,
    seed: int = 0,
    run_dir: Path | None = None,
) -> tuple[dict, list[dict], object]:
    """Train a fresh policy of `task` with `objective` under `sampling`.

    Returns (final evaluation, metrics rows, policy). With `run_dir`, metrics are written there and, with
    `cfg.checkpoint_every`, checkpoints too; an existing checkpoint is resumed.
    """
    check_run(objective, sampling, cfg)

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    eval_generator = torch.Generator().manual_seed(seed + 1_000_003)
    policy = task.make_policy()
    reference = task.make_reference()
    extra_modules = objective.setup(task)
    params = [p for p in policy.parameters() if p.requires_grad]
    params += [p for m in extra_modules for p in m.parameters()]
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    sampler = Sampler(sampling, task, policy, generator)
    if sampler.offline is not None:
        offline = sampler.offline
        check_rewards(offline.rewards, len(offline), "the offline data's reward")
        with torch.no_grad():  # the reference is frozen: score the fixed dataset once
            if objective.needs_reference or (objective.needs_old_logps and offline.old_logps is None):
                offline.ref_logps = reference.logprobs(offline.prompts, offline.completions)
            if objective.needs_old_logps and offline.old_logps is None:
                offline.old_logps = offline.ref_logps  # a dataset without behaviour log-probs: the reference's

    rows: list[dict] = []
    start_iteration, elapsed_before = 0, 0.0
    checkpoint_path = None if run_dir is None else Path(run_dir) / CHECKPOINT
    state = load_checkpoint(checkpoint_path) if checkpoint_path is not None and cfg.checkpoint_every else None
    if state is not None:
        policy.load_state_dict(state["policy"])
        optimizer.load_state_dict(state["optimizer"])
        for module, module_state in zip(extra_modules, state["extra_modules"], strict=True):
            module.load_state_dict(module_state)
        sampler.load_state_dict(state["sampler"])
        generator.set_state(state["generator"])
        eval_generator.set_state(state["eval_generator"])
        torch.set_rng_state(state["torch_rng"])
        rows, start_iteration, elapsed_before = state["rows"], state["iteration"], state["wall_seconds"]

    started = time.perf_counter() - elapsed_before
    updates = int(rows[-1]["train/updates"]) if rows else 0
    evaluation: dict = {}
    bar = tqdm(range(start_iteration, cfg.iterations), disable=not cfg.progress, delay=2.0, desc=task.name, leave=False)
    for iteration in bar:
        t0 = time.perf_counter()
        # 1-3. sample (from the sampler or the offline data), score, attach reference/old log-probs
        rollout = collect(sampler, task, objective, reference)
        # 4. targets, built once and reused for the T updates
        targets = objective.prepare(rollout, iteration)
        row = {"iteration": iteration + 1, "train/reward": rollout.rewards.mean().item()}
        if targets is not None:
            row.update(targets.metrics)
        # 5. T gradient steps on the same batch
        if targets is not None and len(targets.rollout) > 0:
            for _ in range(sampling.updates_per_batch):
                logps = policy.logprobs(targets.rollout.prompts, targets.rollout.completions)
                if objective.needs_old_logps and targets.rollout.old_logps is None:  # old_logps_are_current
                    targets.rollout.old_logps = logps.detach()
                loss, metrics = objective.total_loss(targets, logps)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                sampler.after_update()
                updates += 1
            row.update({k: float(v) for k, v in metrics.items()})
        else:
            row["train/skipped_round"] = 1.0
        # 6. evaluation and the metrics row
        if (iteration + 1) % cfg.eval_every == 0 or iteration + 1 == cfg.iterations:
            evaluation = task.evaluate(policy, eval_generator)
            row.update({f"eval/{k}": v for k, v in evaluation.items()})
        row["time/iteration"] = time.perf_counter() - t0
        row["time/wall"] = time.perf_counter() - started
        row["sampler/syncs"] = float(sampler.syncs)
        row["train/updates"] = float(updates)
        rows.append(row)
        # 7. checkpoint
        if checkpoint_path is not None and cfg.checkpoint_every and (iteration + 1) % cfg.checkpoint_every == 0:
            write_metrics(Path(run_dir) / METRICS, rows)
            save_checkpoint(
                checkpoint_path,
                {
                    "policy": policy.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "extra_modules": [m.state_dict() for m in extra_modules],
                    "sampler": sampler.state_dict(),
                    "generator": generator.get_state(),
                    "eval_generator": eval_generator.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "rows": rows,
                    "iteration": iteration + 1,
                    "wall_seconds": time.perf_counter() - started,
                },
            )
    if not evaluation:  # resumed after the last iteration: evaluate the restored policy
        evaluation = task.evaluate(policy, eval_generator)
    evaluation = dict(evaluation)
    evaluation["wall_seconds"] = time.perf_counter() - started
    return evaluation, rows, policy
