"""Every kind of bad input stops with one line naming its key and the fix, and writes nothing.

A row is a command line and the key its error must name. The command runs in-process through the real
entry point (`alignlab.runs.cli.main`, Hydra included) in an empty directory; a row passes when the command exits
with status 2, prints exactly one line on stderr that names the key and a fix, and leaves the directory
empty. `python tests/test_bad_input.py` prints the table's counts: clean errors, tracebacks, silent runs.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

import pytest

FAST = ["train.iterations=2", "train.progress=false", "plot=false"]
T2 = ["task=synthetic_llm", "task.corpus_size=64", "task.reference_steps=2"]
T3 = ["task=full_scale", "task.model=tiny", "task.device=cpu"]

BAD_INPUT = [
    # types (the schemas, at composition)
    (["train.lr=abc"], "train.lr"),
    (["sampling.prompts_per_round=1.5"], "sampling.prompts_per_round"),
    (["seed=abc"], "seed"),
    (["num_seeds=1.5"], "num_seeds"),
    (["force=maybe"], "force"),
    (["plot=perhaps"], "plot"),
    (["sampling.sync_every=1.5"], "sampling.sync_every"),
    (["train.iterations=1e3x"], "train.iterations"),
    (["task.num_arms=eight"], "task.num_arms"),
    (["algo=ppo", "algo.whiten_advantages=maybe"], "algo.whiten_advantages"),
    # unknown options and keys
    (["algo=DPO"], "algo=dpo"),
    (["algo=nope"], "algo"),
    (["sampling=onlin"], "sampling=online"),
    (["task=Bandit"], "task=bandit"),
    (["beta=0.3"], "algo.beta"),
    (["algo.betta=0.2"], "algo.beta"),
    (["+algo.betta=0.2"], "algo.betta"),
    (["+foo=1"], "foo"),
    (["train.nope=1"], "train.nope"),
    (["-m", "algo=dpo,kto", "algo.betta=0.2"], "algo.beta"),
    # loggers and tuned settings
    (["logger=tensorbord"], "unknown logger 'tensorbord'"),
    (["logger=[csv,wandbb]"], "unknown logger 'wandbb'"),
    (["logger=wandb", "logger.wandb.mode=onlin"], "logger.wandb.mode=onlin is not a W&B mode"),
    (["tuned=bandit_r1_online", "task.reward=r2"], "tuned=bandit_r1_online was tuned for"),
    # ranges: the root and the training loop
    (["num_seeds=0"], "num_seeds"),
    (["threads=0"], "threads"),
    (["threads=-2"], "threads"),
    (["train.lr=0"], "train.lr"),
    (["train.iterations=0"], "train.iterations"),
    (["train.eval_every=0"], "train.eval_every"),
    (["train.max_grad_norm=-1"], "train.max_grad_norm"),
    (["train.max_grad_norm=0"], "train.max_grad_norm"),
    (["train.checkpoint_every=-1"], "train.checkpoint_every"),
    # ranges: sampling
    (["sampling.sync_every=0"], "sampling.sync_every"),
    (["sampling.prompts_per_round=0"], "sampling.prompts_per_round"),
    (["sampling.samples_per_prompt=1"], "sampling.samples_per_prompt"),
    (["sampling.updates_per_batch=0"], "sampling.updates_per_batch"),
    (["sampling.offline_fraction=2"], "sampling.offline_fraction"),
    (["sampling=offline", "sampling.offline_fraction=0.5"], "sampling.offline_fraction"),
    # ranges: every objective's knobs, named as the user wrote them
    (["algo.beta=0"], "algo.beta"),
    (["algo.beta=-1"], "algo.beta"),
    (["algo=kto", "algo.beta=0"], "algo.beta"),
    (["algo=cpo", "algo.beta=-1"], "algo.beta"),
    (["algo=rwr", "algo.beta=0"], "algo.beta"),
    (["algo.label_smoothing=2"], "algo.label_smoothing"),
    (["algo.label_smoothing=-0.1"], "algo.label_smoothing"),
    (["algo=ipo", "algo.tau=0"], "algo.tau"),
    (["algo=ipo", "algo.tau=-1"], "algo.tau"),
    (["algo=kto", "algo.desirable_weight=-1"], "algo.desirable_weight"),
    (["algo=kto", "algo.undesirable_weight=-1"], "algo.undesirable_weight"),
    (["algo=best_of_n_neg_worst", "algo.negative_weight=-1"], "algo.negative_weight"),
    (["algo=best_of_n", "algo.keep_top=0"], "algo.keep_top"),
    (["algo=best_of_n", "algo.keep_top=4"], "algo.keep_top"),
    (["algo=grpo", "algo.clip_epsilon=0"], "algo.clip_epsilon"),
    (["algo=ppo", "algo.clip_epsilon=-0.2"], "algo.clip_epsilon"),
    (["algo=ppo", "algo.lam=1.5"], "algo.lam"),
    (["algo=ppo", "algo.gamma=-0.1"], "algo.gamma"),
    (["algo=ppo", "algo.value_clip=-1"], "algo.value_clip"),
    (["algo=ppo", "algo.value_coef=-1"], "algo.value_coef"),
    (["algo=raft", "algo.top_fraction=0"], "algo.top_fraction"),
    (["algo=rwr", "algo.max_weight=0"], "algo.max_weight"),
    (["algo=rest", "algo.iterations_per_threshold=0"], "algo.iterations_per_threshold"),
    (["algo.kl_coef=-1"], "algo.kl_coef"),
    (["algo.kl_estimator=k9"], "algo.kl_estimator"),
    (["algo.min_reward_gap=-1"], "algo.min_reward_gap"),
    (["algo.pairs=some"], "algo.pairs"),
    # ranges: tier 1
    (["task.num_arms=0"], "task.num_arms"),
    (["task.num_arms=1"], "task.num_arms"),
    (["task.width=0"], "task.width"),
    (["task.width=-1"], "task.width"),
    (["task.skew=1e6"], "task.skew"),
    (["task.skew=-1"], "task.skew"),
    (["task.r1_peak=8"], "task.r1_peak"),
    (["task.reward=r3"], "task.reward"),
    (["task.optimum_beta=0", "algo=reinforce"], "task.optimum_beta"),
    # ranges: tier 2 (checked before the reference is trained)
    ([*T2, "task.corpus_size=0"], "task.corpus_size"),
    ([*T2, "task.reference_steps=0"], "task.reference_steps"),
    ([*T2, "task.eval_prompts=0"], "task.eval_prompts"),
    ([*T2, "task.eval_samples_per_prompt=0"], "task.eval_samples_per_prompt"),
    ([*T2, "task.temperature=0"], "task.temperature"),
    ([*T2, "task.top_p=0"], "task.top_p"),
    ([*T2, "task.n_layer=0"], "task.n_layer"),
    ([*T2, "task.label_noise_beta=-1"], "task.label_noise_beta"),
    ([*T2, "task.corpus_error_rate=1.5"], "task.corpus_error_rate"),
    ([*T2, "task.reward=max_length"], "task.reward"),
    ([*T2, "algo.beta=0"], "algo.beta"),
    ([*T2, "task.response_vocabulary=letters"], "task.response_vocabulary=letters"),
    # minibatches inside a round (T4)
    (["sampling.prompts_per_round=8", "sampling.minibatch_prompts=3"], "sampling.minibatch_prompts=3 does not divide"),
    (["sampling.prompts_per_round=8", "sampling.minibatch_prompts=0"], "sampling.minibatch_prompts=0 does not divide"),
    (["sampling.prompts_per_round=8", "sampling.minibatch_prompts=16"], "sampling.minibatch_prompts=16 does not divi"),
    (["sampling.prompts_per_round=4", "sampling.minibatch_prompts=-1"], "sampling.minibatch_prompts=-1 does not divi"),
    # data: recordings, warm starts, saved behaviour policies, reward mixtures (DATA holds the runs they point at)
    (["sampling=offline", "sampling.dataset=DATA/nope"], "nope does not exist"),
    (["sampling=offline", "sampling.dataset=DATA/empty_recording"], "empty_recording holds no Parquet"),
    (["sampling=offline", "sampling.dataset=DATA/tajwar_recording"], "tajwar_recording is of task bandit_tajwar100"),
    (["sampling=offline", "sampling.dataset=DATA/no_columns.jsonl"], "no_columns.jsonl lacks the column(s) reward"),
    (["sampling.dataset=DATA/bandit_recording", "sampling.dataset_order=recorded"], "dataset_order=recorded replays"),
    (
        ["sampling=offline", "sampling.dataset=DATA/bandit_recording", "sampling.dataset_order=recorded"],
        "asks for round 2",
    ),
    (
        ["sampling=offline", "sampling.dataset=DATA/bandit_recording", "sampling.dataset_order=random"],
        "dataset_order=random",
    ),
    (["init_from=DATA/nope"], "nope is not a run directory"),
    (["init_from=DATA/unfinished"], "unfinished is a run that did not finish"),
    (["init_from=DATA/policy_without_summary"], "summary is a run that did not finish"),
    (["init_from=DATA/summary_without_policy"], "saved no final policy"),
    (["init_from=DATA/tajwar_run"], "is a policy of task bandit_tajwar100"),
    (["init_from=DATA/five_arm_run"], "five_arm_run holds a policy of another model"),
    (["init_reference=nope"], "init_reference=nope"),
    (["sampling=offline", "sampling.behaviour_from=DATA/tajwar_run"], "is a policy of task bandit_tajwar100"),
    (["sampling=offline", "sampling.behaviour_from=DATA/five_arm_run"], "five_arm_run holds a policy of another"),
    (["sampling=offline", "sampling.behaviour_from=DATA/unfinished"], "unfinished is a run that did not"),
    (["reward_mix={weights: {r1: -1, r2: 2}}"], "reward_mix.weights.r1=-1.0 is negative"),
    (["reward_mix={weights: {r1: 0, r2: 0}}"], "reward_mix.weights sum to zero"),
    (["reward_mix={weights: {r3: 1}}"], "reward_mix names r3, not a bandit reward"),
    (["reward_mix={weights: {hard: 1, verifiable: 1}}"], "reward_mix names verifiable"),
    (
        ["reward_mix={weights: {r1: 1}, schedule: [{fraction: 1, weights: {r2: 1}}]}"],
        "exactly one of reward_mix.weights",
    ),
    (
        ["reward_mix={schedule: [{iterations: 2, weights: {r1: 1}}, {iterations: 1, weights: {r2: 1}}]}"],
        "lasts 3 iterations, longer",
    ),
    (
        ["reward_mix={schedule: [{fraction: 0.7, weights: {r1: 1}}, {fraction: 0.7, weights: {r2: 1}}]}"],
        "sum to 1.4, longer",
    ),
    # tier 3, with the random `tiny` model: input files and settings (DATA is a folder of bad files)
    ([*T3, "task.model=DATA/not_a_model"], "task.model"),
    ([*T3, "task.device=cuda"], "task.device"),
    ([*T3, "task.chat_template={% if %}"], "task.chat_template"),
    ([*T3, "task.chat_template='{% if %}'"], "task.chat_template"),
    ([*T3, "task.prompts=DATA/latin1.jsonl"], "latin1.jsonl"),
    ([*T3, "sampling=offline", "task.pairs=DATA/latin1.jsonl"], "latin1.jsonl"),
    ([*T3, "task.prompts=DATA/one_row.jsonl"], "one_row.jsonl"),
    ([*T3, "task.prompts=DATA/empty.jsonl"], "empty.jsonl"),
    ([*T3, "task.prompts=DATA/blank_lines.jsonl"], "blank_lines.jsonl"),
    ([*T3, "task.prompts=DATA/empty.parquet"], "empty.parquet"),
    ([*T3, "task.prompts=DATA/null_prompt.jsonl"], "null_prompt.jsonl row 1"),
    ([*T3, "task.prompts=DATA/not_objects.jsonl"], "not_objects.jsonl row 1"),
    ([*T3, "task.prompts=DATA/bad_json.jsonl"], "bad_json.jsonl row 2"),
    ([*T3, "task.prompts=DATA/missing.jsonl"], "missing.jsonl"),
    ([*T3, "task.reward=reward_model", "task.reward_model=DATA/missing_rm"], "task.reward_model"),
    ([*T3, "task.reward=reward_model"], "task.reward_model"),
    ([*T3, "task.lora_r=-1"], "task.lora_r"),
    ([*T3, "task.eval_samples_per_prompt=0"], "task.eval_samples_per_prompt"),
    ([*T3, "task.eval_prompts=0"], "task.eval_prompts"),
    ([*T3, "task.eval_prompts=1000"], "task.eval_prompts"),
    ([*T3, "task.max_new_tokens=0"], "task.max_new_tokens"),
    ([*T3, "task.temperature=0"], "task.temperature"),
    ([*T3, "task.top_p=1.5"], "task.top_p"),
    ([*T3, "task.dtype=float8"], "task.dtype"),
    ([*T3, "task.reward=lenght"], "task.reward"),
    ([*T3, "algo.beta=0"], "algo.beta"),
    ([*T3, "algo=grpo", "algo.clip_epsilon=-1"], "algo.clip_epsilon"),
    ([*T3, "task.reward=judge", "task.judge_scoring=logits"], "task.judge_scoring"),
    # issue 19: recordings, warm starts, locks
    (["sampling=offline", "sampling.dataset=DATA/rec_missing_round", "sampling.dataset_order=recorded"], "round 2"),
    (["sampling=offline", "sampling.dataset=DATA/rec_missing_round"], "round 2 (round-000002.parquet) is missing"),
    (["sampling=offline", "sampling.dataset=DATA/rec_stray_copy"], "round-000001-copy.parquet, which its manifest"),
    (["sampling=offline", "sampling.dataset=DATA/rec_stray_bak"], "round-000003.bak.parquet, which its manifest"),
    (["sampling=offline", "sampling.dataset=DATA/rec_foreign_round"], "round 2 (round-000002.parquet) of the rec"),
    (["sampling=offline", "sampling.dataset=DATA/rec_damaged_round"], "does not match its checksum"),
    (["sampling=offline", "sampling.dataset=DATA/rec_no_manifest"], "has no manifest"),
    (["sampling=offline", "sampling.dataset=DATA/rec_bad_manifest"], "_manifest.json is damaged"),
    (["sampling=offline", "sampling.dataset=DATA/nan_reward.parquet"], "reward=nan in row 2"),
    (["sampling=offline", "sampling.dataset=DATA/nan_reward.parquet", "sampling.dataset_order=recorded"], "reward=nan"),
    (["sampling=offline", "sampling.dataset=DATA/arm_minus_1.parquet"], "completion=-1 in row 1"),
    (["sampling=offline", "sampling.dataset=DATA/arm_2_7.parquet"], "completion=2.7 in row 1"),
    (["sampling=offline", "sampling.dataset=DATA/arm_8.parquet"], "this task's completions are 0..7"),
    (["sampling=offline", "sampling.dataset=DATA/logp_plus_5.parquet"], "behaviour_logp=5.0 in row 1"),
    (["sampling=offline", "sampling.dataset=DATA/partial_rec", "sampling.dataset_order=recorded"], "is partial"),
    (["init_from=DATA/policy_truncated"], "policy_truncated/policy.pt is damaged"),
    (["init_from=DATA/policy_empty"], "policy_empty/policy.pt is damaged"),
    (["init_from=DATA/policy_garbage"], "policy_garbage/policy.pt is damaged"),
    (["init_from=DATA/policy_no_checksum"], "has no checksum file policy.pt.sha256"),
    (["init_from=DATA/policy_pickle"], "cannot be read as a weights-only torch file"),
    (["sampling=offline", "sampling.behaviour_from=DATA/policy_truncated"], "sampling.behaviour_from: the saved polic"),
    # issue 18/19: numbers, mixtures, options, CLI
    (["train.lr=nan"], "train.lr=nan is not a finite number"),
    (["train.lr=inf"], "train.lr=inf is not a finite number"),
    (["algo=rest", "algo.thresholds=[nan]"], "algo.thresholds[0]=nan"),
    (["task.optimum_beta=nan"], "task.optimum_beta=nan"),
    (["algo.beta=1e-320"], "algo.beta=1e-320 is too close to 0"),
    (["seed=99999999999999999999"], "seed=99999999999999999999 does not fit in 64 bits"),
    (["train.iterations=99999999999999999999"], "train.iterations=99999999999999999999 does not fit"),
    (["threads=100000"], "threads=100000 is more than this machine's"),
    (["sampling.prompts_per_round=1000000000"], "sampling.prompts_per_round=1000000000"),
    (["task._target_=nonexistent.Class"], "task._target_=nonexistent.Class"),
    (["hydra/launcher=joblibb"], "did you mean hydra/launcher=joblib?"),
    (["experiment=online_vs_offline"], "alignlab -m experiment=online_vs_offline"),
    ([*T2, "task.label_noise_beta=nan"], "task.label_noise_beta=nan"),
    (["task=bandit_contextual", "task.reference_epochs=0"], "task.reference_epochs=0"),
    (["sampling.dataset=DATA/bandit_recording"], "sampling.dataset names offline data, but this run is online"),
    (["sampling.behaviour_from=DATA/five_arm_run"], "sampling.behaviour_from names offline data"),
    (["init_reference=move"], "init_reference=move"),
    (["reward_mix=5"], "reward_mix=5 is not a mapping"),
    (["reward_mix=[r1,r2]"], "is not a mapping"),
    (["reward_mix={r1: abc}"], "reward_mix has r1"),
    (["reward_mix={weights: {r1: abc}}"], "reward_mix.weights.r1=abc is not a number"),
    (["reward_mix={weights: {r1: nan}}"], "reward_mix.weights.r1=nan"),
    (["task.reward=r2", "reward_mix={weights: {r1: 1}}"], "task.reward=r2 is not one of reward_mix's rewards"),
    (["reward_mix={schedule: [{iterations: 2.7, weights: {r1: 1}}]}"], "iterations=2.7 is not a whole number"),
    (
        ["reward_mix={schedule: [{iterations: 1, weights: {r1: 1}}, {fraction: 0.5, weights: {r2: 1}}]}"],
        "mixes iterations and fraction",
    ),
    (["reward_mix={schedule: [{iterations: 2, fraction: 1, weights: {r1: 1}}]}"], "both iterations and fraction"),
    (["reward_mix={schedule: [{fraction: 0.5, weights: {r1: 1}}]}"], "fractions sum to 0.5, shorter"),
    (["reward_mix={schedule: [{iterations: 1, weights: {r1: 1}}]}"], "lasts 1 iterations, shorter"),
    (["-m", "sampling.prompts_per_round=8", "sampling.minibatch_prompts=2,3"], "sampling.minibatch_prompts=3 does not"),
    # issues 16, 18 and 19 (tier 3): data accepted silently, settings that train nothing or cannot be honoured
    ([*T3, "sampling=offline", "task.pairs=DATA/same_answers.jsonl"], "same_answers.jsonl row 2"),
    ([*T3, "sampling=offline", "task.pairs=DATA/utf16.jsonl"], "utf16.jsonl"),
    ([*T3, "task.lora_r=4", "task.lora_alpha=0"], "task.lora_alpha"),
    ([*T3, "task.mixed_precision=true"], "task.mixed_precision"),
    ([*T3, "task.dtype=bfloat16", "task.lora_r=4", "task.mixed_precision=true"], "task.mixed_precision"),
    ([*T3, "task.distributed=fsdp", "task.lora_r=4"], "task.lora_r"),
    ([*T3, "task.generation_backend=vllm"], "task.generation_backend"),  # vllm is not in the test venv
    # issue 16 (deepspeed): what DeepSpeed training cannot honour (refused before the package is looked for;
    # deepspeed without the package: tests/test_full_scale_deepspeed.py, the test venv has it)
    ([*T3, "task.distributed=deepspeed", "task.lora_r=4"], "task.lora_r"),
    ([*T3, "task.distributed=deepspeed", "task.deepspeed_config=DATA/ds_optimizer.json"], "optimizer in"),
    ([*T3, "task.distributed=deepspeed", "task.deepspeed_config=DATA/ds_offload.json"], "offload_optimizer"),
    ([*T3, "task.distributed=deepspeed", "task.deepspeed_config=DATA/ds_bf16.json"], "bf16 in"),
    ([*T3, "task.distributed=deepspeed_zero2", "task.deepspeed_config=DATA/ds_zero3.json"], "sets stage 3"),
    ([*T3, "task.deepspeed_config=DATA/ds_zero3.json"], "task.deepspeed_config"),
    ([*T3, "task.distributed=zero2"], "task.distributed"),
    # issue 17: Hydra's flags
    (["-m", "algo=dpo,ipo", "--cfg", "hydra"], "--cfg"),
    # issue 15, tier-3 T1: the easy role, and the offline data (reference samples, or a pairs file when asked)
    (["task=full_scale_mistral7b", "task.reward=easy"], "no 'easy' reward"),  # Mistral-7B's mode is not measured
    ([*T3, "task.reward=easy", "task.length_target=longest"], "task.length_target=longest"),
    ([*T3, "sampling=offline", "task.pairs=DATA/no_such_pairs.jsonl"], "no_such_pairs.jsonl"),
    # issue 16, distributed paths: 16-bit weights and Adam states that ZeRO's fp32 partitions would not keep
    ([*T3, "task.distributed=deepspeed_zero2", "task.dtype=bfloat16", "task.mixed_precision=false"], "task.dtype"),
    ([*T3, "task.distributed=deepspeed_zero3", "task.dtype=float16"], "task.dtype=float16"),
]

BAD_FILES = {
    "latin1.jsonl": '{"prompt": "caf\xe9"}\n{"prompt": "b"}\n'.encode("latin-1"),
    "one_row.jsonl": b'{"prompt": "hello"}\n',
    "empty.jsonl": b"",
    "blank_lines.jsonl": b"\n  \n\n",
    "null_prompt.jsonl": b'{"prompt": null}\n{"prompt": "b"}\n',
    "not_objects.jsonl": b"[1, 2]\n",
    "bad_json.jsonl": b'{"prompt": "a"}\n{"prompt": "b"\n',
    "same_answers.jsonl": b'{"prompt": "a", "chosen": "x", "rejected": "y"}\n'
    b'{"prompt": "b", "chosen": "z", "rejected": "z "}\n',
    "utf16.jsonl": '{"prompt": "a", "chosen": "x", "rejected": "y"}\n'.encode("utf-16"),
    "ds_optimizer.json": b'{"optimizer": {"type": "AdamW", "params": {"lr": 1e-5}}, "zero_optimization": {"stage": 2}}',
    "ds_offload.json": b'{"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}}}',
    "ds_bf16.json": b'{"bf16": {"enabled": true}, "zero_optimization": {"stage": 2}}',
    "ds_zero3.json": b'{"zero_optimization": {"stage": 3}}',
}


def bad_files(folder: Path) -> None:
    """The bad input files the tier-3 rows point at (as DATA)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in BAD_FILES.items():
        (folder / name).write_bytes(data)
    (folder / "not_a_model").mkdir(exist_ok=True)
    (folder / "not_a_model" / "README.md").write_text("weights elsewhere")
    import pandas as pd

    pd.DataFrame({"prompt": pd.Series([], dtype=str)}).to_parquet(folder / "empty.parquet")
    (folder / "no_columns.jsonl").write_text('{"prompt": 0, "completion": 1}\n' * 4)
    (folder / "empty_recording").mkdir(exist_ok=True)
    (folder / "unfinished").mkdir(exist_ok=True)
    bad_runs(folder)


def bad_runs(folder: Path) -> None:
    """The runs the data rows point at: one-round recordings of the bandit and of another task, and run
    directories with or without their saved policy and summary (a finished run has both)."""
    from alignlab.core.objectives import DPO
    from alignlab.core.sampling import SamplingConfig
    from alignlab.core.train import TrainConfig, train
    from alignlab.storage.run import RunStorage
    from alignlab.storage.rundir import SUMMARY, write_json
    from alignlab.storage.warmstart import save_policy
    from bandits import BanditTask

    tajwar = BanditTask(name="bandit_tajwar100", num_arms=100, reference="cauchy_tanh", r1_peak=70, r2_peak=20)
    one_round = TrainConfig(iterations=1, lr=0.05, progress=False)
    for name, task in (("bandit_recording", BanditTask()), ("tajwar_recording", tajwar)):
        train(task, DPO(), SamplingConfig(), one_round, hooks=[RunStorage(folder / name, record_rollouts=True)])
    five_arms = BanditTask(num_arms=5, r1_peak=4)  # the bandit task, another model (5 arms, not 8)
    runs = [("tajwar_run", tajwar, True, True), ("five_arm_run", five_arms, True, True)]
    runs += [
        ("policy_without_summary", BanditTask(), True, False),
        ("summary_without_policy", BanditTask(), False, True),
    ]
    for name, task, policy, summary in runs:
        (folder / name).mkdir(exist_ok=True)
        if policy:
            save_policy(folder / name, task, task.make_policy())
        if summary:
            write_json(folder / name / SUMMARY, {"reward": 0.0})
    bad_recordings(folder)
    bad_policies(folder)


def bad_recordings(folder: Path) -> None:
    """Issue 19: three-round bandit recordings with a round missing, extra, foreign or damaged; one-file datasets
    with values the bandit cannot have; a partial recording (record_rollouts turned on when its run resumed)."""
    import shutil

    import pandas as pd

    from alignlab.core.objectives import DPO
    from alignlab.core.sampling import SamplingConfig
    from alignlab.core.train import TrainConfig, train
    from alignlab.storage.recording import MANIFEST, ROLLOUTS
    from alignlab.storage.run import RunStorage
    from bandits import BanditTask

    three = TrainConfig(iterations=3, lr=0.05, progress=False)
    train(BanditTask(), DPO(), SamplingConfig(), three, hooks=[RunStorage(folder / "rec", record_rollouts=True)])
    other_n = SamplingConfig(samples_per_prompt=2)
    train(BanditTask(), DPO(), other_n, three, hooks=[RunStorage(folder / "rec_n2", record_rollouts=True)])
    rounds = {}
    for name in ("missing_round", "stray_copy", "stray_bak", "foreign_round", "damaged_round", "no_manifest"):
        shutil.copytree(folder / "rec", folder / f"rec_{name}")
        rounds[name] = folder / f"rec_{name}" / ROLLOUTS
    shutil.copytree(folder / "rec", folder / "rec_bad_manifest")
    (folder / "rec_bad_manifest" / ROLLOUTS / MANIFEST).write_text('{"format": "alignlab-recording/1", "rou')
    (rounds["missing_round"] / "round-000002.parquet").unlink()
    shutil.copy(rounds["stray_copy"] / "round-000001.parquet", rounds["stray_copy"] / "round-000001-copy.parquet")
    shutil.copy(rounds["stray_bak"] / "round-000003.parquet", rounds["stray_bak"] / "round-000003.bak.parquet")
    shutil.copy(folder / "rec_n2" / ROLLOUTS / "round-000002.parquet", rounds["foreign_round"] / "round-000002.parquet")
    damaged = rounds["damaged_round"] / "round-000003.parquet"
    damaged.write_bytes(damaged.read_bytes()[:-100])
    (rounds["no_manifest"] / MANIFEST).unlink()
    frame = pd.read_parquet(folder / "rec" / ROLLOUTS / "round-000001.parquet")
    for name, column, row, value in (
        ("nan_reward", "reward", 1, float("nan")),
        ("arm_minus_1", "completion", 0, -1),
        ("arm_2_7", "completion", 0, 2.7),
        ("arm_8", "completion", 3, 8),
        ("logp_plus_5", "behaviour_logp", 0, 5.0),
    ):
        bad = frame.copy()
        if isinstance(value, float) and column == "completion":
            bad[column] = bad[column].astype(float)
        bad.loc[row, column] = value
        bad.to_parquet(folder / f"{name}.parquet")
    # a run of 4 rounds killed after its second checkpoint (round 2), resumed with record_rollouts=true
    partial = folder / "partial_rec"
    two = TrainConfig(iterations=2, lr=0.05, progress=False, checkpoint_every=1)
    train(BanditTask(), DPO(), SamplingConfig(), two, hooks=[RunStorage(partial)])
    four = TrainConfig(iterations=4, lr=0.05, progress=False, checkpoint_every=1)
    train(BanditTask(), DPO(), SamplingConfig(), four, hooks=[RunStorage(partial, record_rollouts=True)])


def bad_policies(folder: Path) -> None:
    """Issue 19: finished runs whose policy.pt is truncated, empty, garbage, without its checksum file, or a
    pickle of an arbitrary object (with a matching checksum: what weights_only=True refuses to run)."""
    from alignlab.storage.rundir import SUMMARY, checksum_path, write_json, write_with_checksum
    from alignlab.storage.warmstart import POLICY, save_policy
    from bandits import BanditTask

    task = BanditTask()
    damages = {
        "policy_truncated": lambda p: p.write_bytes(p.read_bytes()[:50]),
        "policy_empty": lambda p: p.write_bytes(b""),
        "policy_garbage": lambda p: p.write_bytes(bytes(range(256)) * 4),
        "policy_no_checksum": lambda p: checksum_path(p).unlink(),
        "policy_pickle": lambda p: write_with_checksum(p, pickle_of_an_object()),
    }
    for name, damage in damages.items():
        run = folder / name
        run.mkdir(exist_ok=True)
        save_policy(run, task, task.make_policy())
        write_json(run / SUMMARY, {"reward": 0.0})
        damage(run / POLICY)


def pickle_of_an_object() -> bytes:
    import io
    from collections import OrderedDict

    import torch

    buffer = io.BytesIO()
    torch.save({"policy": OrderedDict(), "task": "bandit", "extra": Path("/")}, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    bad_files(folder)
    return folder


def with_data(args: list[str], folder: Path) -> list[str]:
    return [a.replace("DATA", str(folder)) for a in args]


def run_main(args: list[str], cwd: Path) -> tuple[int, str]:
    """alignlab ARGS in `cwd`, in this process: (exit status, stderr)."""
    from hydra.core.global_hydra import GlobalHydra

    from alignlab.runs import cli

    GlobalHydra.instance().clear()
    argv, here = sys.argv, os.getcwd()
    err = io.StringIO()
    code = 0
    sys.argv = ["alignlab", *[a for a in args if a == "-m"], *[a for a in args if a != "-m"]]  # as Hydra parses it
    os.chdir(cwd)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                cli.main()
            except SystemExit as exit:
                code = exit.code if isinstance(exit.code, int) else 1
            except Exception as error:  # a traceback the user would see
                code, err = 1, io.StringIO(f"Traceback: {type(error).__name__}: {error}\n")
    finally:
        sys.argv = argv
        os.chdir(here)
        GlobalHydra.instance().clear()
    return code, err.getvalue()


def classify(code: int, stderr: str, key: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    if code == 0:
        return "silent"
    if "Traceback" in stderr or len(lines) != 1 or code != 2:
        return "traceback"
    if key not in lines[0] or "Fix:" not in lines[0]:
        return "wrong key"
    return "clean"


@pytest.mark.parametrize("args, key", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_one_line_naming_the_key_and_nothing_is_written(tmp_path, data_dir, args, key, monkeypatch):
    if "task=full_scale" in args:
        pytest.importorskip("transformers")
    monkeypatch.setenv("ALIGNLAB_CACHE", str(tmp_path / "cache"))
    work = tmp_path / "work"
    work.mkdir()
    code, stderr = run_main([*FAST, *with_data(args, data_dir)], work)
    assert classify(code, stderr, key) == "clean", (code, stderr)
    assert stderr.startswith("alignlab: error: ")
    assert not list(work.iterdir()), f"a refused command wrote {list(work.rglob('*'))}"


def test_rounds_that_all_skip_are_warned_about(tmp_path):
    code, stderr = run_main([*FAST, "train.iterations=12", "algo.min_reward_gap=5", "hydra.run.dir=run"], tmp_path)
    assert code == 0 and "first 10 rounds had no usable training signal" in stderr and "algo.min_reward_gap" in stderr


def test_held_out_prompts_that_repeat_training_prompts_are_reported(tmp_path):
    pytest.importorskip("transformers")
    (tmp_path / "dups.jsonl").write_text("".join(f'{{"prompt": "{c}"}}\n' for c in "aabb"))
    args = [*FAST, *T3, f"task.prompts={tmp_path / 'dups.jsonl'}", "task.eval_prompts=2", "hydra.run.dir=run"]
    code, stderr = run_main(args, tmp_path)
    assert code == 0 and "held-out prompts also among the training prompts" in stderr and "row 2" in stderr


if __name__ == "__main__":
    import tempfile

    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ALIGNLAB_CACHE"] = str(Path(tmp) / "cache")
        bad_files(Path(tmp) / "data")
        for i, (args, key) in enumerate(BAD_INPUT):
            work = Path(tmp) / str(i)
            work.mkdir()
            verdict = classify(*run_main([*FAST, *with_data(args, Path(tmp) / "data")], work), key)
            if verdict == "clean" and list(work.iterdir()):
                verdict = "wrote files"
            counts[verdict] = counts.get(verdict, 0) + 1
            if verdict != "clean":
                print(verdict, args)
    print(f"cases {len(BAD_INPUT)}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
