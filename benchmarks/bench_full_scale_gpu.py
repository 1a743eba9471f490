"""Throughput, MFU and peak memory of tier-3 training steps on a Mistral-7B-shaped model (random weights).

For each objective (online DPO, GRPO, PPO), a few iterations of alignlab's own training loop
(`alignlab.core.train.train`) run on a model built from MistralConfig (hidden 4096, 32 layers, 32 heads, 8 KV
heads, MLP 14336, vocab 32000: 7.24B parameters) in bfloat16 with gradient checkpointing, LoRA r=16 by
default (`--lora-r 0`: full fine-tuning, which needs >= 80 GB for DPO/GRPO and does not fit PPO on one GPU).
Prompts are random token ids; the reward is the completion length (the model is random, only speed matters).

    python benchmarks/bench_full_scale_gpu.py                     # on a GPU (H100 peak by default)
    python benchmarks/bench_full_scale_gpu.py --peak-tflops 989   # dense bf16 peak of the GPU, in TFLOP/s
    python benchmarks/bench_full_scale_gpu.py --tiny              # the same code path on a CPU, tiny model
    python benchmarks/bench_full_scale_gpu.py --lora-r 0 --objectives dpo grpo   # full fine-tuning, FSDP2

Full fine-tuning (`--lora-r 0`) runs as tier 3 runs it: fp32 master weights and Adam states under bf16
autocast, sharded by FSDP2 (full_scale/fsdp.py) on a group of one device; at 16 B/param plus the bf16
reference it needs about 131 GB before activations, so DPO and GRPO fit an H200 (141 GB) and PPO's value model
does not. Generation is timed first, with the policy's own loop and, when vllm is installed, with vLLM.

Reported per objective: trained tokens/s (prompt + completion tokens through forward and backward, per
second of wall time including sampling), MFU = 6 * N * tokens/s / peak (N = all parameters; with LoRA the
backward skips weight gradients of the frozen base, so 6N overstates its work), and
torch.cuda.max_memory_allocated.
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from torch import nn

from alignlab.core.engine import TorchEngine
from alignlab.core.objectives import DPO, GRPO, PPO
from alignlab.core.sampling import SamplingConfig
from alignlab.core.train import TrainConfig, train
from alignlab.core.types import Rollout
from alignlab.lm.policy import CausalLMValue, TokenCompletions
from full_scale import fsdp
from full_scale.fsdp import FSDPEngine, all_done, shard, start_processes
from full_scale.policy import AdapterOffReference, FullScalePolicy

OBJECTIVES = {"dpo": DPO, "grpo": lambda: GRPO(kl_coef=0.04), "ppo": PPO}


def mistral_config(tiny: bool):
    from transformers import MistralConfig

    if tiny:
        return MistralConfig(
            vocab_size=512,
            hidden_size=64,
            intermediate_size=224,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            pad_token_id=0,
            eos_token_id=2,
            bos_token_id=1,
        )
    return MistralConfig(
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=32768,
        rope_theta=1e6,
        sliding_window=None,
        pad_token_id=0,
        eos_token_id=2,
        bos_token_id=1,
    )


class BenchTask:
    """The Task protocol around a random Mistral: random prompts, length reward, no evaluation."""

    name = "bench_full_scale"

    def __init__(self, args, device: torch.device, dtype: torch.dtype):
        from transformers import MistralForCausalLM

        self.args, self.device = args, device
        config = mistral_config(args.tiny)
        default = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        with torch.device(device):
            self.base = MistralForCausalLM(config).eval()  # built on the device, in dtype: no fp32 copy
        torch.set_default_dtype(default)
        self.num_params = sum(p.numel() for p in self.base.parameters())
        self.eos = config.eos_token_id
        generator = torch.Generator().manual_seed(0)
        self.prompts = [torch.randint(3, config.vocab_size, (args.prompt_len,), generator=generator) for _ in range(64)]
        self.kwargs = dict(
            pad_token_id=0,
            eos_token_id=self.eos,
            max_new_tokens=args.new_tokens,
            max_context=args.prompt_len + args.new_tokens,
            logprob_batch_size=args.logprob_batch_size,
        )
        self.lora = (
            dict(r=args.lora_r, lora_alpha=2 * args.lora_r, target_modules="all-linear") if args.lora_r else None
        )
        self.policy = None
        self.trained_tokens = 0
        self.rounds = 0

    def _trainable(self, model: nn.Module) -> nn.Module:
        if not self.args.tiny:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.train()
        return model

    def make_policy(self):
        if self.lora is None:  # fp32 master weights under bf16 autocast, sharded by FSDP2 (here on one device)
            start_processes(self.device.type)
            model = shard(self._trainable(copy.deepcopy(self.base).float().requires_grad_(True)))
            autocast = None if self.args.tiny else torch.bfloat16
            self.policy = FullScalePolicy(model, autocast_dtype=autocast, **self.kwargs)
            self.policy.sharded, self.policy.stop_together = fsdp, all_done
        else:
            from peft import LoraConfig, get_peft_model

            self.policy = FullScalePolicy(
                get_peft_model(self._trainable(self.base), LoraConfig(task_type="CAUSAL_LM", **self.lora)),
                adapter_only=True,
                **self.kwargs,
            )
        task = self
        logprobs = self.policy.logprobs

        def counting(prompts, completions, *a, **k):
            if torch.is_grad_enabled():
                task.trained_tokens += sum(len(p) for p in prompts) + int(completions.mask.sum())
            return logprobs(prompts, completions, *a, **k)

        self.policy.logprobs = counting
        return self.policy

    def make_reference(self):
        if self.lora is not None:
            return AdapterOffReference(self.policy)
        return FullScalePolicy(self.base.requires_grad_(False), **self.kwargs)

    def make_value_model(self) -> nn.Module:
        trunk = copy.deepcopy(self.policy.model).unload() if self.lora is not None else copy.deepcopy(self.base)
        trunk.requires_grad_(self.lora is None)
        if self.lora is not None:
            from peft import LoraConfig, inject_adapter_in_model

            trunk = inject_adapter_in_model(LoraConfig(**self.lora), trunk)
        return CausalLMValue(self._trainable(trunk), 0, self.args.prompt_len + self.args.new_tokens).to(self.device)

    def make_engine(self, params: list, lr: float, max_grad_norm: float | None):
        if self.lora is None:
            return FSDPEngine([self.policy.model], params, lr, max_grad_norm)
        return TorchEngine(params, lr, max_grad_norm)

    def reward(self, prompts: list, completions: TokenCompletions) -> torch.Tensor:
        return completions.lengths.float() / self.args.new_tokens

    def sample_prompts(self, count: int, generator: torch.Generator) -> list:
        self.rounds += 1
        if self.rounds == self.args.warmup + 1:  # the timed iterations start: count their tokens only
            self.trained_tokens = 0
        idx = torch.randint(len(self.prompts), (count,), generator=generator)
        return [self.prompts[i] for i in idx.tolist()]

    def offline_data(self, num_prompts: int, samples_per_prompt: int, generator: torch.Generator) -> Rollout:
        raise NotImplementedError("the benchmark samples online")

    def evaluate(self, policy, generator: torch.Generator) -> dict[str, float]:
        return {"reward": 0.0, "kl_ref": 0.0}


def generation_speed(args, device: torch.device, dtype: torch.dtype) -> dict[str, float]:
    """Generated tokens/s for one batch of prompts_per_round x samples_per_prompt completions of new_tokens
    (the random model rarely stops early): the policy's own KV-cached loop, then vLLM when it is installed."""
    import importlib.util

    task = BenchTask(args, device, dtype)
    policy = FullScalePolicy(task.base, **task.kwargs)
    prompts = task.prompts[: args.prompts]
    speeds = {}
    for attempt in ("warm-up", "transformers"):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        completions = policy.sample(prompts, args.samples, torch.Generator().manual_seed(0))
        if device.type == "cuda":
            torch.cuda.synchronize()
        speeds[attempt] = completions.mask.sum().item() / (time.perf_counter() - started)
    del speeds["warm-up"]
    if importlib.util.find_spec("vllm") is not None and not args.tiny:
        from full_scale.vllm_backend import VLLMEngine, VLLMPolicy

        started = time.perf_counter()
        engine = VLLMEngine(task.base, None, dtype, device, args.prompt_len + args.new_tokens)
        speeds["vllm start-up (s)"] = time.perf_counter() - started
        sampler = VLLMPolicy(task.base, engine, **task.kwargs)
        sampler.sample(prompts, args.samples, torch.Generator().manual_seed(0))  # the weight push, not timed
        started = time.perf_counter()
        completions = sampler.sample(prompts, args.samples, torch.Generator().manual_seed(1))
        speeds["vllm"] = completions.mask.sum().item() / (time.perf_counter() - started)
        del engine, sampler
    del task, policy
    gc.collect()
    return speeds


def print_generation(speeds: dict[str, float]) -> None:
    print("| generation | tokens/s |")
    print("|---|---|")
    for name, value in speeds.items():
        print(f"| {name} | {value:.1f} |")


def models_held(objective: str, lora_r: int) -> str:
    """What each objective keeps in memory (the reward here is a rule; a learned reward model adds one more).
    With LoRA the reference is the policy with its adapters off: one copy of the base weights for both."""
    reference = "reference (adapters off)" if lora_r else "reference"
    held = {"dpo": ["policy", reference], "grpo": ["policy", reference], "ppo": ["policy", reference, "value"]}
    return " + ".join(held[objective]) + " (+ reward model)"


def run(name: str, args, device: torch.device, dtype: torch.dtype) -> dict:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    task = BenchTask(args, device, dtype)
    sampling = SamplingConfig(prompts_per_round=args.prompts, samples_per_prompt=args.samples)
    config = TrainConfig(iterations=args.warmup + args.steps, lr=1e-5, eval_every=10**9, progress=False)
    _, rows, _ = train(task, OBJECTIVES[name](), sampling, config, seed=0)
    # Steady state: the iterations after the warm-up ones (CUDA kernels and allocator settle in the first).
    timed = rows[1 + args.warmup :]  # rows[0] is the evaluation before training
    seconds = sum(r["time/iteration"] for r in timed)
    tokens_per_s = task.trained_tokens / seconds
    result = {
        "objective": name,
        "params_b": task.num_params / 1e9,
        "s_per_iter": seconds / len(timed),
        "tokens_per_s": tokens_per_s,
        "mfu": 6 * task.num_params * tokens_per_s / args.peak_flops,
        "max_mem_gb": torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else float("nan"),
    }
    del task
    gc.collect()
    return result


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny Mistral on the CPU: checks the code path")
    parser.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=list(OBJECTIVES))
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU (H100 SXM: 989)")
    parser.add_argument("--lora-r", type=int, default=16, help="LoRA rank; 0 = full fine-tuning")
    parser.add_argument("--prompts", type=int, default=4, help="prompts per round")
    parser.add_argument("--samples", type=int, default=2, help="samples per prompt")
    parser.add_argument("--prompt-len", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--logprob-batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="timed iterations per objective")
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args(argv)
    args.peak_flops = args.peak_tflops * 1e12
    if args.tiny:
        device, dtype = torch.device("cpu"), torch.float32
        args.prompt_len, args.new_tokens = min(args.prompt_len, 16), min(args.new_tokens, 8)
    elif not torch.cuda.is_available():
        print(
            "bench_full_scale_gpu: no CUDA device is visible, and this benchmark measures a 7B model on a GPU. "
            "Fix: run it on a machine with an NVIDIA GPU (>= 40 GB for the LoRA default), or pass --tiny to check "
            "the code path on a CPU.",
            file=sys.stderr,
        )
        sys.exit(2)
    else:
        device, dtype = torch.device("cuda"), torch.bfloat16
        if not torch.cuda.is_bf16_supported():
            print("bench_full_scale_gpu: this GPU has no bfloat16. Fix: use an Ampere or newer GPU.", file=sys.stderr)
            sys.exit(2)
    torch.manual_seed(0)
    print_generation(generation_speed(args, device, dtype))
    results = []
    for name in args.objectives:
        started = time.perf_counter()
        results.append(run(name, args, device, dtype))
        print(f"  {name}: done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    where = "tiny Mistral, CPU" if args.tiny else f"Mistral-7B shape, {torch.cuda.get_device_name()}"
    print(
        f"\n{where}; LoRA r={args.lora_r or 'off (full)'}; {args.prompts} prompts x {args.samples} samples; "
        f"prompt {args.prompt_len} + {args.new_tokens} new tokens; peak {args.peak_tflops:g} TFLOP/s"
    )
    print("| objective | models held | params (B) | s / iteration | trained tokens/s | MFU | max memory (GB) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['objective']} | {models_held(r['objective'], args.lora_r)} | {r['params_b']:.3g} | "
            f"{r['s_per_iter']:.2f} | {r['tokens_per_s']:.1f} | {100 * r['mfu']:.2f}% | {r['max_mem_gb']:.1f} |"
        )
    return results


if __name__ == "__main__":
    main()
