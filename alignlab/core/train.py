"""The training loop, identical on every tier.

train() is the loop and nothing else. What a run does around it (resume from a checkpoint, write checkpoints
and metrics, record rollouts, start from another run's policy, read offline data from disk, log to trackers)
attaches through `RunHooks` objects the caller passes: alignlab/storage/run.py's `RunStorage` is the run
directory's, `EachRow` wraps a tracker. The core does no I/O of its own.

loop: [every s updates: refresh the sampler from the policy]
      draw B prompts x n samples (or the next offline batch) -> score with the reward
      -> build targets (pairs / filtered set / weights / advantages)
      -> T gradient steps of the objective
      -> metrics row (reward, KL to reference, log-probs of chosen/rejected, ...)
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from alignlab.core.engine import make_engine
from alignlab.core.objectives.base import Objective, Targets
from alignlab.core.sampling import OfflineSource, Sampler, SamplingConfig, minibatches_of
from alignlab.core.types import Rollout, select
from alignlab.errors import ConfigError, NumericalError, RewardError, check_range

# Rounds that all skip (no pair passes algo.min_reward_gap, no sample clears ReST's threshold) before a warning.
SKIPPED_ROUNDS_WARNING = 10
# The extras key that carries each target's row in its minibatch through `prepare` (see prepare_targets).
SOURCE_ROW = "source_row"


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
        check_range("train.max_grad_norm", self.max_grad_norm, "(0, inf)", "null: no clipping")
        check_range("train.checkpoint_every", self.checkpoint_every, "[0, inf)", "0: never")


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


def check_evaluation(evaluation: dict, iteration: int) -> dict:
    """The task's evaluation, or a NumericalError naming the first metric that is NaN or infinite (a written
    `"reward": null` looks like a result; it is not one)."""
    for key, value in evaluation.items():
        if isinstance(value, (int, float)) and not math.isfinite(value):
            raise NumericalError(
                f"the evaluation at iteration {iteration} gave eval/{key}={value}",
                "the policy or the task's settings overflow: lower train.lr or the task's extreme values "
                "(e.g. task.skew), and check the reward",
            )
    return evaluation


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
        and cfg.steps_per_pass == 1
        and not objective.needs_old_logps_before_update
    )


def collect(sampler: Sampler, task, objective: Objective, reference, record: bool = False) -> Rollout:
    """1. Draw this round's data and 2. score it; 3. attach the log-probs the objective reads.

    `old_logps` are the log-probs of the behaviour policy that produced each sample (the sampler online or
    semi-online; for offline data, what the dataset recorded, else the reference), so that PPO's and GRPO's
    ratios pi / pi_old correct for off-policy data instead of ignoring it. With `record`, the behaviour
    log-probs are taken in every case (the recording keeps them). A mixed reward's components go to `extras`.
    The online rows' reference log-probs are left to `prepare_targets` unless `prepare` reads them.
    """
    offline, prompts, completions, behaviour = sampler.next_round()
    parts = [] if offline is None else [offline]
    if offline is not None and offline.ref_logps is None and objective.needs_reference | objective.needs_old_logps:
        with torch.no_grad():  # a replayed recording's round: scored against the reference round by round
            offline.ref_logps = reference.logprobs(offline.prompts, offline.completions)
            if offline.old_logps is None:
                offline.old_logps = offline.ref_logps
    if record and offline is not None:
        # Offline rows are recorded with the behaviour log-probs training uses for them: the dataset's own, else
        # the reference's; `offline` marks them in a round that mixes both (sampling.offline_fraction).
        offline.extras["offline"] = torch.ones(len(offline))
        if offline.old_logps is None:
            with torch.no_grad():
                ref_logps = offline.ref_logps
                if ref_logps is None:
                    ref_logps = reference.logprobs(offline.prompts, offline.completions)
                offline.old_logps = ref_logps
    if completions is not None:
        online = Rollout(prompts, completions, score(task, prompts, completions), sampler.cfg.samples_per_prompt)
        online.extras.update(getattr(task, "last_reward_components", {}))
        with torch.no_grad():
            # Scored here only if `prepare` reads them, or if the round mixes in offline rows (already scored: the
            # round concatenates whole); else `prepare_targets` scores just the rows the targets keep (online DPO
            # drops tied pairs: most of them on tier 3's length reward).
            if objective.needs_reference and (offline is not None or objective.needs_reference_before_targets):
                online.ref_logps = reference.logprobs(prompts, completions)
            if (objective.needs_old_logps and not old_logps_are_current(sampler, objective)) or record:
                online.old_logps = behaviour.logprobs(prompts, completions)
        if record:
            online.extras["offline"] = torch.zeros(len(online))
        parts.append(online)
    return parts[0] if len(parts) == 1 else Rollout.cat(parts)


def prepare_targets(objective: Objective, part: Rollout, reference, iteration: int) -> Targets | None:
    """4. The targets of one minibatch; when `collect` left the reference log-probs out, the reference then
    scores the rows the targets use, each once (pairs share rows under algo.pairs=all), and none that they drop."""
    if part.ref_logps is not None or not objective.needs_reference:
        return objective.prepare(part, iteration)
    # Each target's row in `part` rides along in `extras`, which every Rollout.select indexes too.
    tagged = dataclasses.replace(part, extras=part.extras | {SOURCE_ROW: torch.arange(len(part))})
    targets = objective.prepare(tagged, iteration)
    if targets is None:
        return None
    rows = targets.rollout.extras.pop(SOURCE_ROW)
    if len(rows) > 0:
        used, where = torch.unique(rows, return_inverse=True)
        with torch.no_grad():
            scored = reference.logprobs(select(part.prompts, used), select(part.completions, used))
        targets.rollout.ref_logps = scored[where]
    return targets


class RunHooks:
    """What attaches to the loop. train() calls each method at one point, for each hook in the order given;
    the defaults do nothing, so a hook overrides only what it needs."""

    records_behaviour = False  # True: every round's behaviour log-probs are taken, for a hook that keeps them

    def policies(self, task) -> tuple[object, object] | None:
        """(policy, reference) to train instead of the task's fresh ones (a warm start), or None."""
        return None

    def offline_source(self, task, sampling: SamplingConfig) -> OfflineSource | None:
        """The offline data `sampling.dataset` or `sampling.behaviour_from` names, read from storage, or None."""
        return None

    def start(self, loop: Loop) -> None:
        """Before the first round: a hook that resumes loads `loop.load_state_dict` and `loop.rows` here."""

    def rollout(self, loop: Loop, rollout: Rollout, iteration: int) -> None:
        """Round `iteration` (1-based)'s scored data, before any update on it."""

    def row(self, loop: Loop, row: dict) -> None:
        """A finished metrics row (iteration 0 included): trackers, the distribution at each evaluation."""

    def round_end(self, loop: Loop) -> None:
        """After every hook has seen the round's row: a checkpoint can be written."""

    def end(self, loop: Loop) -> None:
        """After the last round."""

    def stop(self, loop: Loop) -> None:
        """The loop stopped on an exception (a crash, Ctrl-C), which then propagates: finish what is in flight."""


class EachRow(RunHooks):
    """A function called with each finished metrics row and the policy (alignlab/runs/loggers.py: RunRecorder)."""

    def __init__(self, function: Callable[[dict, object], None]):
        self.function = function

    def row(self, loop: Loop, row: dict) -> None:
        self.function(row, loop.policy)


@dataclass
class Loop:
    """A run of train() in progress: what the hooks read, and what a checkpoint saves (`state_dict`)."""

    task: object
    cfg: TrainConfig
    policy: object
    reference: object
    extra_modules: list
    engine: object  # alignlab.core.engine: owns the optimizer, backward, clipping and the step
    sampler: Sampler
    generator: torch.Generator
    eval_generator: torch.Generator
    rows: list[dict] = field(default_factory=list)
    iteration: int = 0  # rounds finished
    evaluation: dict = field(default_factory=dict)  # the last iteration's, once it is evaluated
    started: float = 0.0  # time.perf_counter() at the start, less the time before a resume

    def state_dict(self) -> dict:
        """Everything the numbers of the rest of the run depend on: tensors, numbers and strings only, so the
        file any hook writes from it opens with torch.load(..., weights_only=True)."""
        return {
            "policy": self.policy.state_dict(),
            "optimizer": self.engine.state_dict(),
            "extra_modules": [m.state_dict() for m in self.extra_modules],
            "sampler": self.sampler.state_dict(),
            "generator": self.generator.get_state(),
            "eval_generator": self.eval_generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            # the last iteration's evaluation: a run killed before its summary ends with these numbers
            "final_evaluation": self.evaluation if self.iteration == self.cfg.iterations else {},
            "iteration": self.iteration,
            "wall_seconds": time.perf_counter() - self.started,
        }

    def load_state_dict(self, state: dict) -> None:
        """The state of `state_dict()`; the rows are the resuming hook's to restore (they live on disk)."""
        self.policy.load_state_dict(state["policy"])
        self.engine.load_state_dict(state["optimizer"])
        for module, module_state in zip(self.extra_modules, state["extra_modules"], strict=True):
            module.load_state_dict(module_state)
        self.sampler.load_state_dict(state["sampler"])
        self.generator.set_state(state["generator"])
        self.eval_generator.set_state(state["eval_generator"])
        torch.set_rng_state(state["torch_rng"])
        self.iteration = state["iteration"]
        self.started = time.perf_counter() - state["wall_seconds"]
        self.evaluation = dict(state["final_evaluation"])


def train(
    task,
    objective: Objective,
    sampling: SamplingConfig,
    cfg: TrainConfig,
    seed: int = 0,
    hooks: Sequence[RunHooks] = (),
) -> tuple[dict, list[dict], object]:
    """Train a fresh policy of `task` (or the one a hook's `policies` gives) with `objective` under `sampling`.

    Returns (final evaluation, metrics rows, policy). Everything that reads or writes files attaches through
    `hooks` (RunHooks; alignlab/storage/run.py's RunStorage for a run directory).
    """
    check_run(objective, sampling, cfg)

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    eval_generator = torch.Generator().manual_seed(seed + 1_000_003)
    warm = next((p for p in (h.policies(task) for h in hooks) if p is not None), None)
    policy, reference = warm if warm is not None else (task.make_policy(), task.make_reference())
    extra_modules = objective.setup(task)
    params = [p for p in policy.parameters() if p.requires_grad]
    params += [p for m in extra_modules for p in m.parameters()]
    engine = make_engine(task, params, cfg.lr, cfg.max_grad_norm)
    source = next((s for s in (h.offline_source(task, sampling) for h in hooks) if s is not None), None)
    sampler = Sampler(sampling, task, policy, generator, source)
    sampler.check_rounds(cfg.iterations)
    if sampler.offline is not None:
        offline = sampler.offline
        check_rewards(offline.rewards, len(offline), "the offline data's reward")
        with torch.no_grad():  # the reference is frozen: score the fixed dataset once
            if objective.needs_reference or (objective.needs_old_logps and offline.old_logps is None):
                offline.ref_logps = reference.logprobs(offline.prompts, offline.completions)
            if objective.needs_old_logps and offline.old_logps is None:
                offline.old_logps = offline.ref_logps  # a dataset without behaviour log-probs: the reference's

    loop = Loop(task, cfg, policy, reference, extra_modules, engine, sampler, generator, eval_generator)
    loop.started = time.perf_counter()
    try:
        evaluation = run_loop(loop, task, objective, sampling, cfg, hooks)
    except BaseException:
        for hook in hooks:
            hook.stop(loop)
        raise
    for hook in hooks:
        hook.end(loop)
    evaluation = dict(evaluation)
    evaluation["wall_seconds"] = time.perf_counter() - loop.started
    return evaluation, loop.rows, policy


def run_loop(loop: Loop, task, objective, sampling: SamplingConfig, cfg: TrainConfig, hooks) -> dict:
    """The rounds from `loop.iteration` to `cfg.iterations`; the final evaluation."""
    policy, reference, sampler, engine = loop.policy, loop.reference, loop.sampler, loop.engine
    eval_generator = loop.eval_generator
    for hook in hooks:
        hook.start(loop)
    record = any(h.records_behaviour for h in hooks)
    rows = loop.rows
    skipped = 0
    updates = int(rows[-1]["train/updates"]) if rows else 0
    if not rows:  # the reference's level: every curve starts at iteration 0
        loop.evaluation = task.evaluate(policy, eval_generator)
        rows.append({"iteration": 0, **{f"eval/{k}": v for k, v in loop.evaluation.items()}, "train/updates": 0.0})
        for hook in hooks:
            hook.row(loop, rows[-1])
    final_evaluation, loop.evaluation = loop.evaluation, {}
    bar = tqdm(range(loop.iteration, cfg.iterations), disable=not cfg.progress, delay=2.0, desc=task.name, leave=False)
    for iteration in bar:
        t0 = time.perf_counter()
        if hasattr(task, "begin_round"):  # a reward schedule picks this round's weights
            task.begin_round(iteration)
        # 1-3. sample (from the sampler or the offline data), score, attach reference/old log-probs
        rollout = collect(sampler, task, objective, reference, record=record)
        for hook in hooks:
            hook.rollout(loop, rollout, iteration + 1)
        row = {"iteration": iteration + 1, "train/reward": rollout.rewards.mean().item()}
        # a component of a mixture by domain is NaN on the prompts it does not score
        row.update({f"train/{k}": v.nanmean().item() for k, v in rollout.extras.items() if k.startswith("reward/")})
        # 4. targets, built once per minibatch of M prompts (the whole round by default), reused for T updates
        minibatches = [
            prepare_targets(objective, part, reference, iteration) for part in minibatches_of(rollout, sampling)
        ]
        usable = [t for t in minibatches if t is not None and len(t.rollout) > 0]
        for targets in minibatches:
            if targets is not None:
                row.update(targets.metrics)
        # 5. T passes over the round, one gradient step per minibatch (B/M steps a pass)
        for _ in range(sampling.updates_per_batch if usable else 0):
            for targets in usable:
                logps = policy.logprobs(targets.rollout.prompts, targets.rollout.completions)
                if objective.needs_old_logps and targets.rollout.old_logps is None:  # old_logps_are_current
                    targets.rollout.old_logps = logps.detach()
                loss, metrics = objective.total_loss(targets, logps)
                engine.step(loss)  # zero_grad, backward, clip, optimizer step
                sampler.after_update()
                updates += 1
                row.update({k: float(v) for k, v in metrics.items()})
        if not usable:
            row["train/skipped_round"] = 1.0
            skipped += 1
            if skipped == iteration + 1 == min(SKIPPED_ROUNDS_WARNING, cfg.iterations):
                print(
                    f"alignlab: warning: the first {skipped} rounds had no usable training signal and were skipped: "
                    "check the objective's filters (algo.min_reward_gap, algo.thresholds, algo.top_fraction) "
                    "against the reward's scale",
                    file=sys.stderr,
                )
        # 6. evaluation and the metrics row
        if (iteration + 1) % cfg.eval_every == 0 or iteration + 1 == cfg.iterations:
            loop.evaluation = check_evaluation(task.evaluate(policy, eval_generator), iteration + 1)
            row.update({f"eval/{k}": v for k, v in loop.evaluation.items()})
        row["time/iteration"] = time.perf_counter() - t0
        row["time/wall"] = time.perf_counter() - loop.started
        row["sampler/syncs"] = float(sampler.syncs)
        row["train/updates"] = float(updates)
        rows.append(row)
        loop.iteration = iteration + 1
        for hook in hooks:
            hook.row(loop, row)
        # 7. checkpoint (a hook's)
        for hook in hooks:
            hook.round_end(loop)
    evaluation = loop.evaluation
    if not evaluation:  # resumed after the last iteration: the evaluation saved with the last checkpoint
        evaluation = final_evaluation or check_evaluation(task.evaluate(policy, eval_generator), cfg.iterations)
    return evaluation
