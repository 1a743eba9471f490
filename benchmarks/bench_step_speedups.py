"""Issue 16's two step speed-ups on SmolLM2-135M-Instruct (task=full_scale), each against the code without it,
A/B in one process on the same model, prompts and seed.

    python benchmarks/bench_step_speedups.py [--repeats 7] [--runs 2] [--rounds 4] [--threads 2]

1. `logits_to_keep`: CausalLMPolicy's scoring forward computes logits only at completion positions. Timed on one
   round (B=8 prompts x n=2 completions of 24 tokens, the task's defaults; random tokens, not generated): the
   reference's no-grad forward and the policy's forward + backward, narrowed against every position's logits
   (the prefill of `sample` narrows in both), alternating, median of `--repeats`; and the reference's forward
   on the rows of 2 of the 8 prompts, what it scores once 6 of 8 pairs tie.
2. The reference scores only the rows the targets keep: whole online-DPO steps on the length reward (where
   pairs tie when both completions hit the token cap), as train() times them (`time/iteration`; the last
   round, which evaluates, left out). Three modes in turn, `--runs` times each: neither speed-up (main's
   step), `logits_to_keep` alone, both.

Prints medians of wall and CPU seconds (this process's, all threads: steadier than wall when other work shares
the cores) and the ratios to main's; the load average beside each part.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from alignlab.core.objectives import DPO
from alignlab.core.objectives.base import Objective
from alignlab.core.sampling import SamplingConfig
from alignlab.core.train import RunHooks, TrainConfig, train
from alignlab.lm.policy import CausalLMPolicy, TokenCompletions
from full_scale import FullScaleTask

PROMPTS, SAMPLES = 8, 2  # conf/task/full_scale.yaml's round


def load() -> str:
    return "load average " + ", ".join(f"{x:.1f}" for x in os.getloadavg())


def seconds(fn) -> tuple[float, float]:
    """Wall and CPU seconds of fn() (CPU: this process's, every thread; steadier than wall on a busy machine)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


class CpuStamps(RunHooks):
    """This process's CPU time at each metrics row: the CPU seconds of each training round."""

    def __init__(self):
        self.stamps = []

    def row(self, loop, row) -> None:
        self.stamps.append(time.process_time())


def forward_backward(task: FullScaleTask, repeats: int) -> None:
    policy, reference = task.make_policy(), task.make_reference()
    generator = torch.Generator().manual_seed(0)
    prompts = task.sample_prompts(PROMPTS, generator)
    rows = [p for p in prompts for _ in range(SAMPLES)]
    # Completions at the token cap (as most are on the length reward), drawn at random rather than generated:
    # a forward's cost does not depend on which tokens it reads, and generation is the slow part on a busy CPU.
    vocab = policy.model.get_output_embeddings().weight.shape[0]
    shape = (len(rows), task.max_new_tokens)
    completions = TokenCompletions(torch.randint(vocab, shape, generator=generator), torch.ones(shape))
    width = max(len(p) for p in rows)

    def reference_forward():
        with torch.no_grad():
            reference.logprobs(rows, completions)

    kept = list(range(2 * SAMPLES))  # the rows of 2 of the 8 prompts: 6 of 8 pairs tied, about tier 3's share

    def reference_forward_kept():
        with torch.no_grad():
            reference.logprobs(rows[: len(kept)], completions[torch.tensor(kept)])

    def policy_forward_backward():
        policy.zero_grad(set_to_none=True)
        policy.logprobs(rows, completions).sum().sum().backward()

    times = {(part, narrow): [] for part in ("reference", "policy", "kept") for narrow in (True, False)}
    started = load()
    for repeat in range(repeats + 1):  # the first repeat warms up
        for narrow in (True, False) if repeat % 2 else (False, True):
            policy.keeps_logits = reference.keeps_logits = narrow
            ref_s, policy_s = seconds(reference_forward), seconds(policy_forward_backward)
            kept_s = seconds(reference_forward_kept) if narrow else None
            if repeat:
                times["reference", narrow].append(ref_s)
                times["policy", narrow].append(policy_s)
                if narrow:
                    times["kept", narrow].append(kept_s)
    print(
        f"\n1. logits_to_keep: {len(rows)} rows, prompts up to {width} tokens + {completions.tokens.shape[1]} "
        f"completion tokens, median of {repeats} ({started} at the start, {load()} at the end)"
    )
    print(f"{'pass':<28}{'clock':>6}{'all logits s':>14}{'narrowed s':>12}{'ratio':>8}")
    for part, label in (("reference", "reference forward (no grad)"), ("policy", "policy forward + backward")):
        for clock, index in (("wall", 0), ("cpu", 1)):
            full = statistics.median(t[index] for t in times[part, False])
            narrow = statistics.median(t[index] for t in times[part, True])
            print(f"{label:<28}{clock:>6}{full:>14.2f}{narrow:>12.2f}{narrow / full:>8.3f}")
    print(f"\nThe reference on the kept rows only ({len(kept)} of {len(rows)}), narrowed logits in both")
    print(f"{'pass':<28}{'clock':>6}{'all rows s':>14}{'kept rows s':>12}{'ratio':>8}")
    for clock, index in (("wall", 0), ("cpu", 1)):
        whole = statistics.median(t[index] for t in times["reference", True])
        kept_s = statistics.median(t[index] for t in times["kept", True])
        print(f"{'reference forward (no grad)':<28}{clock:>6}{whole:>14.2f}{kept_s:>12.2f}{kept_s / whole:>8.3f}")


class Mode:
    """Patches that give main's step: every position's logits when scoring; the reference scores every row."""

    def __init__(self, narrow: bool, pairs_first: bool):
        self.narrow, self.pairs_first = narrow, pairs_first
        self.saved = []

    def __enter__(self):
        if not self.narrow:
            last_logits = CausalLMPolicy._last_logits
            self.saved.append((CausalLMPolicy, "_last_logits", last_logits))
            CausalLMPolicy._last_logits = lambda policy, count: last_logits(policy, count) if count == 1 else {}
        if not self.pairs_first:
            self.saved.append((Objective, "needs_reference_before_targets", Objective.needs_reference_before_targets))
            Objective.needs_reference_before_targets = property(lambda objective: True)
        return self

    def __exit__(self, *exc):
        for owner, name, value in self.saved:
            setattr(owner, name, value)
        self.saved.clear()


def dpo_steps(task: FullScaleTask, runs: int, rounds: int) -> None:
    modes = {"main (neither)": Mode(False, False), "logits_to_keep": Mode(True, False), "both": Mode(True, True)}
    steps = {name: [] for name in modes}
    cpu = {name: [] for name in modes}
    tokens = {name: [] for name in modes}
    skipped = []
    score = task.reward

    def scored(prompts, completions):
        if len(completions) == PROMPTS * SAMPLES:  # a training round's (an evaluation scores 1 sample)
            tokens[current].append(completions.lengths.sum().item())
        return score(prompts, completions)

    task.reward = scored
    sampling = SamplingConfig(prompts_per_round=PROMPTS, samples_per_prompt=SAMPLES)
    config = TrainConfig(iterations=rounds + 1, lr=3e-5, eval_every=10**6, progress=False)
    started = load()
    for run in range(runs):
        for current, mode in modes.items() if run % 2 == 0 else reversed(modes.items()):
            stamps = CpuStamps()
            with mode:
                _, rows, _ = train(task, DPO(), sampling, config, seed=run, hooks=[stamps])
            steps[current] += [r["time/iteration"] for r in rows[1:-1]]
            cpu[current] += [b - a for a, b in zip(stamps.stamps[:-2], stamps.stamps[1:-1], strict=True)]
            del tokens[current][-1]  # the last round, left out of the timing
            skipped += [r.get("pairs/skipped_fraction", 1.0) for r in rows[1:-1]]  # none: every pair tied
    print(
        f"\n2. online DPO steps, length reward, B={PROMPTS} x n={SAMPLES}, {task.max_new_tokens} new tokens; median "
        f"of {runs} x {rounds} steps a mode ({started} at the start, {load()} at the end)"
    )
    print(f"tied pairs (dropped): {statistics.mean(skipped):.0%} of pairs")
    print(f"{'mode':<18}{'wall s / step':>14}{'ratio':>7}{'cpu s / step':>14}{'ratio':>7}{'tokens / step':>15}")
    main_wall, main_cpu = statistics.median(steps["main (neither)"]), statistics.median(cpu["main (neither)"])
    for name in modes:
        wall, used = statistics.median(steps[name]), statistics.median(cpu[name])
        print(
            f"{name:<18}{wall:>14.2f}{wall / main_wall:>7.3f}{used:>14.2f}{used / main_cpu:>7.3f}"
            f"{statistics.mean(tokens[name]):>15.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="part 1: timed repeats of each pass")
    parser.add_argument("--runs", type=int, default=2, help="part 2: training runs per mode")
    parser.add_argument("--rounds", type=int, default=4, help="part 2: timed steps per run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=["logits", "steps"], default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = FullScaleTask(model="smollm2", eval_prompts=1, eval_samples_per_prompt=1)
    print(f"SmolLM2-135M-Instruct, float32, torch {torch.__version__}, {args.threads} threads")
    if args.only in (None, "logits"):
        forward_backward(task, args.repeats)
    if args.only in (None, "steps"):
        dpo_steps(task, args.runs, args.rounds)


if __name__ == "__main__":
    main()
