"""The reference's completion lengths on tier 3: where its mode is, and so which length reward is `easy`.

    python benchmarks/reference_lengths.py [--model smollm2] [--samples 8] [--max-new-tokens 24] [--seed 0]

Samples `--samples` completions of every training prompt of the sample file from the reference (the task's
temperature), and prints how many end at each length (tokens, the end token included; the cap when cut), the
mean, and the two length rewards' means: `length` (1 - len/cap, the hard role) and `long_length` (len/cap).
Measured 2026-12-03 with the defaults (SmolLM2-135M-Instruct, 32 prompts x 8): 214 of 256 at the cap of 24,
the other 42 over 5-23 tokens with no length above 5 samples; mean 22.6. The mode is the cap, so `long_length`
is the easy role of conf/task/full_scale.yaml (full_scale/rewards.py, LengthReward).
"""

from __future__ import annotations

import argparse
from collections import Counter

import torch

from full_scale import FullScaleTask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--samples", type=int, default=8, help="completions per training prompt")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    task = FullScaleTask(model=args.model, max_new_tokens=args.max_new_tokens)
    reference = task.make_reference()
    generator = torch.Generator().manual_seed(args.seed)
    lengths = []
    with torch.no_grad():
        for start in range(0, len(task.train_prompts), 8):  # 8 prompts a batch: memory stays small on a CPU
            completions = reference.sample(task.train_prompts[start : start + 8], args.samples, generator)
            lengths += [int(n) for n in completions.lengths.tolist()]
    counts, cap = Counter(lengths), args.max_new_tokens
    print(f"{len(lengths)} reference completions of {len(task.train_prompts)} training prompts, cap {cap} tokens")
    print("| length | completions |\n|---:|---:|")
    for length, count in sorted(counts.items()):
        print(f"| {length} | {count} |")
    mean = sum(lengths) / len(lengths)
    mode = max(counts, key=lambda n: (counts[n], n))
    print(f"mean {mean:.2f}, mode {mode} ({counts[mode] / len(lengths):.0%}); ", end="")
    print(f"length (1 - len/{cap}) {1 - mean / cap:.3f}, long_length (len/{cap}) {mean / cap:.3f}")


if __name__ == "__main__":
    main()
