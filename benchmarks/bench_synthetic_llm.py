"""Tier-2 speed and a learning check: sampling and training throughput of the synthetic LLM, then online vs
offline DPO on `min_length` with the task's default settings (conf/task/synthetic_llm.yaml).

    python benchmarks/bench_synthetic_llm.py [--iterations 200] [--threads 1] [--cache-dir DIR]

Prints a table. Throughputs are medians over repeated calls at the start of training (reference-length
completions, the slowest case); a DPO update is log-probs of the chosen and rejected completions, backward
and an Adam step.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import yaml

from alignlab.core.objectives import DPO
from alignlab.core.sampling import SamplingConfig
from alignlab.core.train import TrainConfig, train
from alignlab.core.types import Rollout
from synthetic_llm import SyntheticLMTask

DEFAULTS = yaml.safe_load((Path(__file__).resolve().parents[1] / "conf" / "task" / "synthetic_llm.yaml").read_text())
PROMPTS_PER_ROUND = DEFAULTS["sampling"]["prompts_per_round"]
SAMPLES_PER_PROMPT = DEFAULTS["sampling"]["samples_per_prompt"]
OFFLINE_PROMPTS = DEFAULTS["sampling"]["offline_prompts"]
LR, EVAL_EVERY = DEFAULTS["train"]["lr"], DEFAULTS["train"]["eval_every"]


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def throughput(task: SyntheticLMTask, repeats: int) -> dict[str, float]:
    policy, reference = task.make_policy(), task.make_reference()
    generator = torch.Generator().manual_seed(0)
    prompts = task.sample_prompts(PROMPTS_PER_ROUND, generator)
    rows = [p for p in prompts for _ in range(SAMPLES_PER_PROMPT)]
    completions = policy.sample(prompts, SAMPLES_PER_PROMPT, generator)
    sample_s = median_seconds(lambda: policy.sample(prompts, SAMPLES_PER_PROMPT, generator), repeats)

    objective = DPO(beta=0.1)
    rollout = Rollout(rows, completions, task.reward(rows, completions), SAMPLES_PER_PROMPT)
    with torch.no_grad():
        rollout.ref_logps = reference.logprobs(rows, completions)
    targets = objective.prepare(rollout, 0)
    optimizer = torch.optim.Adam(policy.parameters(), lr=LR)

    def update():
        logps = policy.logprobs(targets.rollout.prompts, targets.rollout.completions)
        loss, _ = objective.total_loss(targets, logps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    update_s = median_seconds(update, repeats)
    with torch.no_grad():
        ref_s = median_seconds(lambda: reference.logprobs(rows, completions), repeats)
    trained = targets.rollout.completions
    prompt_tokens = sum(len(p) for p in targets.rollout.prompts)
    return {
        "sample_s": sample_s,
        "sample_tok_s": float(completions.lengths.sum()) / sample_s,
        "update_s": update_s,
        "update_tok_s": (float(trained.lengths.sum()) + prompt_tokens) / update_s,
        "ref_logp_s": ref_s,
        "completion_tokens": float(completions.lengths.mean()),
    }


def dpo_run(task: SyntheticLMTask, regime: str, iterations: int) -> dict:
    sampling = SamplingConfig(
        name=regime,
        sync_every=None if regime == "offline" else 1,
        prompts_per_round=PROMPTS_PER_ROUND,
        samples_per_prompt=SAMPLES_PER_PROMPT,
        offline_prompts=OFFLINE_PROMPTS,
    )
    config = TrainConfig(iterations=iterations, lr=LR, eval_every=EVAL_EVERY, progress=False)
    evaluation, rows, _ = train(task, DPO(beta=0.1), sampling, config, seed=0)
    curve = {r["iteration"]: r["eval/mean_length"] for r in rows if "eval/mean_length" in r}
    return evaluation | {"curve": curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=DEFAULTS["train"]["iterations"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    task = SyntheticLMTask(
        reward="min_length", cache_dir=args.cache_dir, response_vocabulary=DEFAULTS["task"]["response_vocabulary"]
    )
    start = time.perf_counter()
    task.make_reference()
    built = f"built in {time.perf_counter() - start:.1f} s" if task.reference_built else "loaded from cache"
    reference = task.evaluate(task.make_reference(), torch.Generator().manual_seed(0))
    speed = throughput(task, args.repeats)
    online = dpo_run(task, "online", args.iterations)
    offline = dpo_run(task, "offline", args.iterations)

    print(
        f"synthetic_llm (2x64 GPT-2, vocab {task.tokenizer.vocab_size}, max_new_tokens {task.max_new_tokens}), "
        f"B={PROMPTS_PER_ROUND} n={SAMPLES_PER_PROMPT}, torch threads {args.threads}; reference {built}"
    )
    print()
    print("| measure | value |")
    print("|---|---|")
    count = PROMPTS_PER_ROUND * SAMPLES_PER_PROMPT
    print(
        f"| sample B x n = {count} completions (median) | {speed['sample_s'] * 1e3:.1f} ms "
        f"({speed['completion_tokens']:.1f} tokens each) |"
    )
    print(f"| sampling throughput | {speed['sample_tok_s']:,.0f} generated tokens/s |")
    print(f"| reference log-probs of the round (median) | {speed['ref_logp_s'] * 1e3:.1f} ms |")
    print(
        f"| DPO update: log-probs + backward + Adam on {PROMPTS_PER_ROUND} pairs (median) | "
        f"{speed['update_s'] * 1e3:.1f} ms |"
    )
    print(f"| training throughput | {speed['update_tok_s']:,.0f} tokens/s (prompt + completion) |")
    for name, run in (("online", online), ("offline", offline)):
        print(f"| {name} DPO, {args.iterations} iterations, wall | {run['wall_seconds']:.1f} s |")
    print()
    print("| min_length | reward | mean_length | median | kl_ref |")
    print("|---|---|---|---|---|")
    for name, run in (("reference", reference), ("offline DPO", offline), ("online DPO", online)):
        print(
            f"| {name} | {run['reward']:.3f} | {run['mean_length']:.2f} | {run['length_median']:.0f} | "
            f"{run['kl_ref']:.2f} |"
        )
    print()
    marks = [i for i in online["curve"] if i in (10, 20, 30, 50, 100, args.iterations)]
    print("| eval/mean_length at iteration | " + " | ".join(str(i) for i in marks) + " |")
    print("|---|" + "---|" * len(marks))
    for name, run in (("online DPO", online), ("offline DPO", offline)):
        print(f"| {name} | " + " | ".join(f"{run['curve'][i]:.2f}" for i in marks) + " |")


if __name__ == "__main__":
    main()
