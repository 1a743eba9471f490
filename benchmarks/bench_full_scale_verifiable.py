"""Tier 3's verifiable task on a CPU: held-out accuracy of SmolLM2-135M-Instruct on generated arithmetic
(`task.reward=arithmetic`, checked with math-verify) before training (the reference) and after online DPO,
semi-online DPO, GRPO and offline DPO with the same budget: Lanchantin et al. 2025 (arXiv:2506.21495) on a
real model, in minutes.

    python benchmarks/bench_full_scale_verifiable.py [--iterations 12] [--runs online_dpo,grpo,...] [--threads 2]

The model is loaded once and every run starts from it (a fresh policy per run, the same seed). Accuracy is
the mean reward of eval_prompts x eval_samples_per_prompt samples at the task's temperature; the reference's
is measured once, on the same held-out problems. Prints one line per run and a table at the end.
"""

from __future__ import annotations

import argparse
import time

import torch

from alignlab.core.objectives import DPO, GRPO
from alignlab.core.sampling import SamplingConfig
from alignlab.core.train import TrainConfig, train
from full_scale import FullScaleTask

RUNS = {
    "online_dpo": (DPO, dict(sync_every=1)),
    "semi_online_dpo": (DPO, dict(sync_every=4)),
    "grpo": (GRPO, dict(sync_every=1)),
    "offline_dpo": (DPO, dict(sync_every=None)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--prompts-per-round", type=int, default=4)
    parser.add_argument("--samples-per-prompt", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--max-operand", type=int, default=12)
    parser.add_argument("--eval-prompts", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    task = FullScaleTask(
        model="smollm2",
        reward="arithmetic",
        max_operand=args.max_operand,
        max_new_tokens=args.max_new_tokens,
        eval_prompts=args.eval_prompts,
        eval_samples_per_prompt=2,
    )
    print(f"loaded in {time.perf_counter() - started:.0f} s", flush=True)
    results = {}
    for name in args.runs.split(","):
        objective, regime = RUNS[name]
        sampling = SamplingConfig(
            prompts_per_round=args.prompts_per_round,
            samples_per_prompt=args.samples_per_prompt,
            offline_prompts=args.prompts_per_round * args.iterations,
            **regime,
        )
        config = TrainConfig(iterations=args.iterations, lr=args.lr, eval_every=args.iterations, progress=True)
        t0 = time.perf_counter()
        evaluation, rows, _ = train(task, objective(), sampling, config, seed=args.seed)
        results[name] = evaluation
        pairs = sum(r.get("pairs/count", 0) for r in rows)
        trained = [r for r in rows if "train/reward" in r]  # rows[0] is the reference's evaluation (iteration 0)
        first, last = trained[0]["train/reward"], trained[-1]["train/reward"]
        print(
            f"{name}: accuracy {evaluation['reward']:.3f} (reference {evaluation['reference_reward']:.3f}), "
            f"win rate {evaluation['win_rate']:.3f}, mean length {evaluation['mean_length']:.1f}, "
            f"KL {evaluation['kl_ref']:.2f}, train reward {first:.2f} -> {last:.2f}, pairs {pairs:.0f}; "
            f"{time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    print("\n| run | held-out accuracy | reference | win rate | mean length |\n|---|---|---|---|---|")
    for name, e in results.items():
        row = (e["reward"], e["reference_reward"], e["win_rate"], e["mean_length"])
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
