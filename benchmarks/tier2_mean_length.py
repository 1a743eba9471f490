"""The tier-2 `mean_length` investigation (benchmarks/tier2_mean_length.md): named variants of online and offline
DPO on the synthetic LLM, several seeds each, one markdown row per variant.

    python benchmarks/tier2_mean_length.py --variants offline,online --seeds 0,1,2 [--workers 2] [--out FILE]
    python benchmarks/tier2_mean_length.py --list

A variant starts from the task's defaults (conf/task/synthetic_llm.yaml, read here) and changes what its entry
in VARIANTS says. Each row gives the mean (and s.d.) over seeds of the final evaluation (reward, KL to the
reference, mean length, the share of well-formed responses, the share of responses of length 20, the corpus's
longest), the best evaluated reward and the iteration where it was reached.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
import yaml

TASK_YAML = Path(__file__).resolve().parents[1] / "conf" / "task" / "synthetic_llm.yaml"

# name -> (regime, {"task": {...}, "train": {...}, "sampling": {...}, "algo": {...}, "objective": "dpo"})
# Every variant but the `*_allvocab` ones runs with the task's response_vocabulary (corpus: the policy writes only
# the corpus's letters and the end token); `*_allvocab` lets it write any token (the setting before the fix).
VARIANTS: dict[str, tuple[str, dict]] = {
    "online": ("online", {}),
    "offline": ("offline", {}),
    # learning rate
    "offline_lr3e-5": ("offline", {"train": {"lr": 3e-5}}),
    "offline_lr1e-5": ("offline", {"train": {"lr": 1e-5}}),
    "online_lr3e-5": ("online", {"train": {"lr": 3e-5}}),
    "online_lr1e-5": ("online", {"train": {"lr": 1e-5}}),
    # beta
    "offline_beta0.5": ("offline", {"algo": {"beta": 0.5}}),
    "offline_beta0.02": ("offline", {"algo": {"beta": 0.02}}),
    # offline data size (prompts x 4 samples)
    "offline_data2048": ("offline", {"sampling": {"offline_prompts": 2048}}),
    "offline_data64": ("offline", {"sampling": {"offline_prompts": 64}}),
    # pairs: ties and small gaps skipped, every ordered pair
    "offline_gap0.2": ("offline", {"algo": {"min_reward_gap": 0.2}}),
    "offline_allpairs": ("offline", {"algo": {"pairs": "all"}}),
    # the corpus cap: max_new_tokens one above the longest corpus response (no unseen lengths 21-23)
    "offline_cap21": ("offline", {"task": {"max_new_tokens": 21}}),
    "online_cap21": ("online", {"task": {"max_new_tokens": 21}}),
    # a loss that keeps the chosen likely: CPO-style NLL on the chosen, and IPO's bounded margin
    "offline_ipo": ("offline", {"objective": "ipo"}),
    "online_ipo": ("online", {"objective": "ipo"}),
    # the whole vocabulary: digits and symbols, which the length corpus never shows, may be written
    "offline_allvocab": ("offline", {"task": {"response_vocabulary": "all"}}),
    "online_allvocab": ("online", {"task": {"response_vocabulary": "all"}}),
    "offline_allvocab_lr1e-5": ("offline", {"task": {"response_vocabulary": "all"}, "train": {"lr": 1e-5}}),
    "offline_allvocab_400": ("offline", {"task": {"response_vocabulary": "all"}, "train": {"iterations": 400}}),
    "offline_400": ("offline", {"train": {"iterations": 400}}),
    "online_400": ("online", {"train": {"iterations": 400}}),
    "offline_allvocab_beta0.5": ("offline", {"task": {"response_vocabulary": "all"}, "algo": {"beta": 0.5}}),
    "offline_allvocab_gap0.2": ("offline", {"task": {"response_vocabulary": "all"}, "algo": {"min_reward_gap": 0.2}}),
    "offline_allvocab_allpairs": ("offline", {"task": {"response_vocabulary": "all"}, "algo": {"pairs": "all"}}),
    # arithmetic (the README's numbers)
    "arith_rloo": ("online", {"task": {"reward": "arithmetic"}, "objective": "rloo"}),
    "arith_grpo": ("online", {"task": {"reward": "arithmetic"}, "objective": "grpo"}),
    "arith_dpo": ("online", {"task": {"reward": "arithmetic"}}),
    "arith_dpo_offline": ("offline", {"task": {"reward": "arithmetic"}}),
    # the other reward, for contrast
    "offline_min": ("offline", {"task": {"reward": "min_length"}}),
    "online_min": ("online", {"task": {"reward": "min_length"}}),
    "offline_min_lr3e-5": ("offline", {"task": {"reward": "min_length"}, "train": {"lr": 3e-5}}),
    "online_min_lr3e-5": ("online", {"task": {"reward": "min_length"}, "train": {"lr": 3e-5}}),
    "offline_min_allvocab": ("offline", {"task": {"reward": "min_length", "response_vocabulary": "all"}}),
    "online_min_allvocab": ("online", {"task": {"reward": "min_length", "response_vocabulary": "all"}}),
}


def task_defaults() -> dict:
    cfg = yaml.safe_load(TASK_YAML.read_text())
    task = {k: v for k, v in cfg["task"].items() if k not in ("_target_", "roles", "optimum_beta")}
    task["reward"] = "mean_length"
    task["reference_steps"] = None
    return {"task": task, "train": dict(cfg["train"]), "sampling": dict(cfg["sampling"])}


def run_one(name: str, seed: int, cache_dir: str | None, overrides: tuple[str, ...] = ()) -> dict:
    from alignlab.core.sampling import SamplingConfig
    from alignlab.core.train import TrainConfig, train
    from alignlab.runs.cli import build
    from synthetic_llm import SyntheticLMTask
    from synthetic_llm.task import completion_lengths

    torch.set_num_threads(1)
    regime, change = VARIANTS[name]
    base = task_defaults()
    for override in overrides:  # "group.key=value" on top of the task defaults, under the variant's own changes
        key, value = override.split("=", 1)
        group, field = key.split(".", 1)
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                parsed = float(parsed)
            except ValueError:
                pass
        base[group][field] = parsed
    task_kw = base["task"] | change.get("task", {})
    if cache_dir:
        task_kw["cache_dir"] = cache_dir
    task = SyntheticLMTask(**task_kw)
    sampling_kw = base["sampling"] | change.get("sampling", {})
    sampling = SamplingConfig(name=regime, sync_every=None if regime == "offline" else 1, **sampling_kw)
    train_kw = base["train"] | change.get("train", {})
    algo = yaml.safe_load((TASK_YAML.parents[1] / "algo" / f"{change.get('objective', 'dpo')}.yaml").read_text())
    algo.pop("name")
    objective = build(algo | change.get("algo", {}))
    start = time.perf_counter()
    final, rows, policy = train(task, objective, sampling, TrainConfig(progress=False, **train_kw), seed=seed)
    evals = [(r["iteration"], r["eval/reward"]) for r in rows if "eval/reward" in r]
    best_iteration, best_reward = max(evals, key=lambda e: e[1])
    _, completions = task._sample_eval(policy, torch.Generator().manual_seed(seed + 17), 8)
    lengths, _ = completion_lengths(completions, task.tokenizer.eos_id)
    at = dict(evals)
    return {
        "variant": name,
        "seed": seed,
        "reward": final["reward"],
        "kl_ref": final["kl_ref"],
        "mean_length": final["mean_length"],
        "well_formed": final["well_formed"],
        "share_L20": float((lengths == task.spec.max_length).float().mean()),
        "best_reward": best_reward,
        "best_iteration": best_iteration,
        "reward_at_40": at.get(40, float("nan")),
        "iterations": train_kw["iterations"],
        "seconds": time.perf_counter() - start,
        "curve": evals,
        "trace": [
            [r["iteration"], r["eval/reward"], r["eval/kl_ref"], r["eval/mean_length"], r["eval/well_formed"]]
            for r in rows
            if "eval/reward" in r
        ],
    }


def summarise(name: str, results: list[dict]) -> str:
    def cell(key: str, fmt: str) -> str:
        values = [r[key] for r in results]
        mean = statistics.fmean(values)
        if len(values) < 2:
            return format(mean, fmt)
        return f"{format(mean, fmt)} ± {format(statistics.stdev(values), fmt)}"

    return (
        f"| {name} | {len(results)} | {cell('reward', '.3f')} | {cell('kl_ref', '.1f')} | "
        f"{cell('mean_length', '.1f')} | {cell('well_formed', '.2f')} | {cell('share_L20', '.2f')} | "
        f"{cell('best_reward', '.3f')} @ {cell('best_iteration', '.0f')} | {cell('seconds', '.0f')} |"
    )


HEADER = (
    "| variant | seeds | final reward | KL (nats) | mean length | well-formed | share L=20 | best reward @ iteration "
    "| s/run |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="offline,online")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument(
        "--set", action="append", default=[], help="change a task default for every variant, e.g. train.lr=1e-4"
    )
    parser.add_argument("--out", default=None, help="append one JSON line per run to this file")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    if args.list:
        for name, (regime, change) in VARIANTS.items():
            print(f"{name}: {regime} {change}")
        return
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; --list shows them")
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = [(n, s) for n in names for s in seeds]
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(
            pool.map(run_one, *zip(*jobs, strict=True), [args.cache_dir] * len(jobs), [tuple(args.set)] * len(jobs))
        )
    if args.out:
        with open(args.out, "a") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")
    print(HEADER)
    for name in names:
        print(summarise(name, [r for r in results if r["variant"] == name]))


if __name__ == "__main__":
    main()
