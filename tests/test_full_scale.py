"""Tier 3 on a tiny random Llama (full_scale.tiny): every objective, LoRA, checkpoint/resume, data formats,
rewards, evaluation, bad input, the configs and the CLI. No download: everything is built in code."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest
import torch

from alignlab.core.objectives import (
    CPO,
    DPO,
    GRPO,
    IPO,
    KTO,
    PPO,
    RAFT,
    RLOO,
    RWR,
    SFT,
    BestOfN,
    Reinforce,
    ReST,
    SuperHF,
)
from alignlab.core.roles import resolve_reward
from alignlab.core.sampling import SamplingConfig
from alignlab.core.train import TrainConfig, train
from alignlab.errors import ConfigError, DataError
from alignlab.storage.run import RunStorage
from full_scale import FullScaleTask
from full_scale.data import load_pairs, load_prompts, sample_file
from full_scale.policy import AdapterOffReference
from full_scale.rewards import (
    JUDGE_PROMPT,
    LLMJudge,
    MathReward,
    RewardModel,
    pairwise_accuracy,
    parse_judge_score,
    train_reward_model,
)
from full_scale.tiny import tiny_model, tiny_reward_model, tiny_tokenizer

ROOT = Path(__file__).resolve().parents[1]

OBJECTIVES = {
    "sft": SFT,
    "best_of_n": BestOfN,
    "best_of_n_neg_worst": lambda: BestOfN(negative="worst"),
    "best_of_n_neg_worse": lambda: BestOfN(negative="worse"),
    "raft": RAFT,
    "rest": lambda: ReST(thresholds=[0.0]),
    "rwr": RWR,
    "superhf": SuperHF,
    "reinforce": Reinforce,
    "rloo": RLOO,
    "grpo": GRPO,
    "ppo": PPO,
    "dpo": DPO,
    "ipo": IPO,
    "kto": KTO,
    "cpo": CPO,
}


class CharCodeReward:
    """Mean character code of the text / 127: a reward with signal (and no ties) on a random model's text."""

    def score(self, prompts, texts, lengths):
        return torch.tensor([sum(map(ord, t)) / max(len(t), 1) / 127 for t in texts])


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def make_task(**kwargs) -> FullScaleTask:
    args = dict(model="tiny", max_new_tokens=6, eval_prompts=2, eval_samples_per_prompt=1) | kwargs
    task = FullScaleTask(**args)
    if args.get("reward", "length") == "length":
        task.reward_fn = CharCodeReward()
    return task


@pytest.fixture(scope="module")
def task() -> FullScaleTask:
    return make_task(pairs="sample")  # sampling=offline trains on the sample pairs file (not reference samples)


@pytest.fixture(scope="module")
def lora_task() -> FullScaleTask:
    return make_task(lora_r=4, lora_alpha=8)


def quick(iterations: int = 2, **kwargs) -> TrainConfig:
    return TrainConfig(**(dict(iterations=iterations, lr=1e-2, eval_every=1000, progress=False) | kwargs))


def weights(policy) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in policy.parameters() if p.requires_grad])


# ---- every objective ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_every_objective_trains_the_tiny_model(task, name):
    objective = OBJECTIVES[name]()
    initial = weights(task.make_policy())
    evaluation, rows, policy = train(
        task, objective, SamplingConfig(prompts_per_round=2, samples_per_prompt=3), quick()
    )
    assert len(rows) == 3  # iteration 0 (the reference) and 2 iterations
    assert {"reward", "kl_ref", "mean_length"} <= set(evaluation)
    assert all(torch.isfinite(torch.tensor(v)) for v in evaluation.values())
    assert not torch.equal(weights(policy), initial), f"{name} did not update the policy"


def test_offline_dpo_on_the_sample_pairs(task):
    sampling = SamplingConfig(
        name="offline", sync_every=None, prompts_per_round=4, samples_per_prompt=2, offline_prompts=12
    )
    evaluation, rows, _ = train(task, DPO(), sampling, quick(3))
    trained = [row for row in rows if row["iteration"] > 0]  # iteration 0 is the reference's evaluation
    assert all(row["pairs/count"] == 4.0 for row in trained), "each pair (chosen, rejected) becomes one DPO pair"
    assert all(row["train/reward"] == 0.5 for row in trained), "offline pairs carry rewards [1, 0]"


def test_offline_needs_two_samples_per_prompt(task):
    with pytest.raises(ConfigError, match="samples_per_prompt=2"):
        task.offline_data(4, 3, torch.Generator())


# ---- LoRA ---------------------------------------------------------------------------------------------------
def test_lora_trains_adapters_only_and_the_reference_is_the_base(lora_task):
    policy = lora_task.make_policy()
    reference = lora_task.make_reference()
    assert isinstance(reference, AdapterOffReference)
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    prompts = lora_task.eval_prompts
    samples = reference.sample(prompts, 2, torch.Generator().manual_seed(0))
    repeated = [p for p in prompts for _ in range(2)]
    before = reference.logprobs(repeated, samples).tokens
    _, _, trained = train(
        lora_task, DPO(), SamplingConfig(prompts_per_round=2, samples_per_prompt=2), quick(3, lr=5e-2)
    )
    after_ref = AdapterOffReference(trained).logprobs(repeated, samples).tokens
    after_policy = trained.logprobs(repeated, samples).tokens.detach()
    assert torch.allclose(before, after_ref, atol=1e-6), "disabling the adapters must give the untouched base"
    assert not torch.allclose(after_ref, after_policy), "the adapters did not train"
    state = trained.state_dict()
    assert state and all("lora_" in k for k in state), "a LoRA checkpoint holds only the adapters"


def test_ppo_with_lora_has_a_lora_critic(lora_task):
    ppo = PPO()
    train(lora_task, ppo, SamplingConfig(prompts_per_round=2, samples_per_prompt=2), quick())
    trainable = [n for n, p in ppo.value_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith("head.") for n in trainable)


# ---- checkpoint / resume -----------------------------------------------------------------------------------
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_interrupted_run_resumes_to_the_same_numbers(task, lora_task, tmp_path, lora):
    t = lora_task if lora else task
    sampling = SamplingConfig(prompts_per_round=2, samples_per_prompt=2)
    whole_eval, whole_rows, whole = train(
        t, DPO(), sampling, quick(4, checkpoint_every=1, eval_every=2), hooks=[RunStorage(tmp_path / "whole")]
    )
    whole_weights = weights(whole).clone()
    cut = [RunStorage(tmp_path / "cut")]
    train(t, DPO(), sampling, quick(2, checkpoint_every=1, eval_every=2), hooks=cut)  # "killed" after 2
    resumed_eval, resumed_rows, resumed = train(
        t, DPO(), sampling, quick(4, checkpoint_every=1, eval_every=2), hooks=[RunStorage(tmp_path / "cut")]
    )

    def numbers(rows):
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]

    assert numbers(resumed_rows) == numbers(whole_rows)
    assert {k: v for k, v in resumed_eval.items() if k != "wall_seconds"} == {
        k: v for k, v in whole_eval.items() if k != "wall_seconds"
    }
    assert torch.equal(weights(resumed), whole_weights)


# ---- data ---------------------------------------------------------------------------------------------------
def test_sample_data_files():
    prompts = load_prompts(sample_file("prompts.jsonl"))
    pairs = load_pairs(sample_file("pairs.jsonl"))
    assert len(prompts) == 40 and sum(p.answer is not None for p in prompts) == 16
    assert len(pairs) == 40 and all(p.chosen and p.rejected for p in pairs)


def test_pair_formats_jsonl_and_parquet(tmp_path):
    rows = [
        {
            "prompt": "hi?",
            "chosen": [{"role": "user", "content": "hi?"}, {"role": "assistant", "content": "hello"}],
            "rejected": [{"role": "user", "content": "hi?"}, {"role": "assistant", "content": "go away"}],
        },
    ]
    hh = {
        "chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: 2+2?\n\nAssistant: 4",
        "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: 2+2?\n\nAssistant: 5",
    }
    plain = {"prompt": "2+2?", "chosen": "4", "rejected": "5"}
    for name, row in (("uf", rows[0]), ("hh", hh), ("plain", plain)):
        path = tmp_path / f"{name}.jsonl"
        path.write_text(json.dumps(row) + "\n")
        (pair,) = load_pairs(path)
        assert pair.prompt.messages[-1]["role"] == "user" and pair.chosen in ("hello", "4")
    (hh_pair,) = load_pairs(tmp_path / "hh.jsonl")
    assert [m["role"] for m in hh_pair.prompt.messages] == ["user", "assistant", "user"]
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([plain, plain]), tmp_path / "pairs.parquet")
    assert len(load_pairs(tmp_path / "pairs.parquet")) == 2


def test_malformed_rows_name_the_file_and_the_row(tmp_path):
    good = json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"})
    path = tmp_path / "pairs.jsonl"
    path.write_text(good + "\n" + good + "\n" + json.dumps({"prompt": "a", "chosen": "b"}) + "\n")
    with pytest.raises(DataError, match=r"pairs.jsonl row 3: a pair needs 'chosen' and 'rejected'.*Fix:"):
        load_pairs(path)
    path.write_text(good + "\n{not json\n")
    with pytest.raises(DataError, match=r"pairs.jsonl row 2 is not valid JSON"):
        load_pairs(path)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "ok"}) + "\n" + json.dumps({"prompt": ""}) + "\n")
    with pytest.raises(DataError, match=r"prompts.jsonl row 2: the prompt is empty"):
        make_task(prompts=str(prompts))


# ---- bad input ----------------------------------------------------------------------------------------------
def test_missing_model_path():
    with pytest.raises(ConfigError, match=r"task.model=/no/such/model does not exist.*Fix:"):
        FullScaleTask(model="/no/such/model")


def test_unreachable_hub_id_offline():
    with pytest.raises(
        ConfigError, match=r"model path no-such-org/no-such-model does not exist locally.*Fix:.*smollm2"
    ):
        FullScaleTask(model="no-such-org/no-such-model")


def test_tokenizer_without_chat_template(tmp_path):
    tokenizer = tiny_tokenizer(chat_template=None)
    tiny_model(tokenizer).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match=r"has no chat template.*Fix:.*chat_template=plain"):
        FullScaleTask(model=str(tmp_path))
    task = FullScaleTask(model=str(tmp_path), chat_template="plain", max_new_tokens=4, eval_prompts=2)
    assert task.tokenizer.decode(task.eval_prompts[0]).endswith("Assistant:")


def test_context_overflow_names_the_prompt():
    with pytest.raises(
        DataError, match=r"prompts.jsonl row \d+: its \d+ tokens plus task.max_new_tokens=6 exceed .* 60 tokens.*Fix:"
    ):
        make_task(max_context=60)


def test_reward_model_with_wrong_labels(tmp_path):
    tokenizer = tiny_tokenizer()
    tiny_reward_model(tokenizer, num_labels=3).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match=r"num_labels=3.*Fix:.*num_labels=1"):
        make_task(reward="reward_model", reward_model=str(tmp_path))


def test_vllm_backend_is_a_clear_error():
    with pytest.raises(ConfigError, match="vllm"):
        FullScaleTask(model="tiny", generation_backend="vllm")


def test_unknown_reward():
    with pytest.raises(ConfigError, match="task.reward=bleu"):
        FullScaleTask(model="tiny", reward="bleu")


# ---- rewards and evaluation --------------------------------------------------------------------------------
def test_judge_score_parsing():
    assert parse_judge_score("Good answer.\nScore: 4") == 4.0
    assert parse_judge_score("**Score:** 3 points") == 3.0
    assert parse_judge_score("first Score: 2, then revised. Score: 5") == 5.0
    assert parse_judge_score("I would give it 4/5.") == 4.0
    assert parse_judge_score("score = 2.5") == 2.5
    assert parse_judge_score("Score: 17") is None
    assert parse_judge_score("no verdict here") is None


def test_math_reward():
    math = MathReward()
    assert math.check("12", "7 + 5 = 12, so the answer is 12.") == 1.0
    assert math.check("12", "The answer is 13.") == 0.0
    assert math.check("3/4", "It is $\\frac{3}{4}$.") == 1.0
    task = make_task(reward="math")
    assert all(task.record(p).answer is not None for p in task.train_prompts + task.eval_prompts)
    policy = task.make_policy()
    assert set(task.evaluate(policy, torch.Generator().manual_seed(0))) >= {"reward", "kl_ref", "mean_length"}


def test_self_judge_and_reward_model_give_a_win_rate(tmp_path):
    judge = make_task(reward="judge", judge="self", judge_max_new_tokens=8)
    result = judge.evaluate(judge.make_policy(), torch.Generator().manual_seed(0))
    assert 0.0 <= result["win_rate"] <= 1.0 and result["judge_parse_failures"] == 1.0  # a random judge says nothing
    tokenizer = tiny_tokenizer()
    tiny_reward_model(tokenizer).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    rm = make_task(reward="reward_model", reward_model=str(tmp_path))
    assert isinstance(rm.reward_fn, RewardModel)
    result = rm.evaluate(rm.make_policy(), torch.Generator().manual_seed(0))
    assert 0.0 <= result["win_rate"] <= 1.0 and "reference_reward" in result


def test_a_judge_request_longer_than_the_judge_context_is_a_clear_error():
    from full_scale.rewards import LLMJudge

    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer)
    model.config.max_position_embeddings = 256  # the 0-5 prompt alone is ~1,800 character tokens
    judge = LLMJudge(lambda: model, tokenizer, max_new_tokens=8)
    record = load_prompts(sample_file("prompts.jsonl"))[0]
    with pytest.raises(DataError, match="over the judge model's context of 256.*Fix: use a judge with a longer"):
        judge.score([record], ["an answer"])


def probability_judge(**kwargs):
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer, seed=3)
    return LLMJudge(lambda: model, tokenizer, scoring="probabilities", **kwargs), model, tokenizer


def test_a_probability_judge_scores_the_expected_digit_under_its_next_token_distribution():
    judge, model, tokenizer = probability_judge()
    record = load_prompts(sample_file("prompts.jsonl"))[0]
    # by hand: the chat-templated request, the answer's start "Score: ", then E[d] over p("0".."5") renormalised
    chat = [{"role": "user", "content": JUDGE_PROMPT.format(instruction=record.text, response="an answer")}]
    text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) + "Score: "
    ids = torch.tensor([tokenizer.encode(text, add_special_tokens=False)])
    digits = [tokenizer.convert_tokens_to_ids(str(d)) for d in range(6)]
    with torch.no_grad():
        p = torch.softmax(model(ids).logits[0, -1, digits], dim=-1)
    by_hand = sum(d * p[d].item() for d in range(6))
    assert judge.score([record], ["an answer"]).item() == pytest.approx(by_hand, abs=1e-5)
    assert judge.parse_failures == 0 and judge.calls == 1


def test_probability_judge_scores_lie_in_0_5_and_agree_batched_and_one_by_one():
    judge, _, _ = probability_judge(batch_size=8)
    records = load_prompts(sample_file("prompts.jsonl"))[:4]
    responses = ["4", "The answer is four, since two plus two is four.", "", "I do not know."]
    batched = judge.score(records, responses)
    judge.batch_size = 1
    one_by_one = judge.score(records, responses)
    assert batched.shape == (4,) and bool(((batched >= 0) & (batched <= 5)).all())
    torch.testing.assert_close(batched, one_by_one, atol=1e-5, rtol=0)
    assert batched.unique().numel() > 1  # different requests, different expected scores: not a constant


def test_a_judge_tokenizer_without_one_token_per_score_digit_is_refused_for_probabilities():
    from tokenizers import Tokenizer
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    base = tiny_tokenizer()
    vocab = dict(base.get_vocab()) | {" 3": len(base)}  # " 3" is one token: "Score: 3" is not "Score: " + "3"
    backend = Tokenizer(BPE(vocab=vocab, merges=[(" ", "3")], unk_token="<unk>"))
    merged = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>")
    model = tiny_model(base)
    with pytest.raises(ConfigError, match="judge_scoring=probabilities.*Fix: use task.judge_scoring=generate"):
        LLMJudge(lambda: model, merged, scoring="probabilities")
    LLMJudge(lambda: model, merged, scoring="generate")  # generation parses text: any tokenizer does
    with pytest.raises(ConfigError, match="task.judge_scoring=logits.*Fix: use one of generate, probabilities"):
        LLMJudge(lambda: model, base, scoring="logits")


def test_a_self_judge_by_probabilities_gives_a_win_rate_without_parse_failures():
    task = make_task(reward="judge", judge="self", judge_scoring="probabilities")
    result = task.evaluate(task.make_policy(), torch.Generator().manual_seed(0))
    assert 0.0 <= result["win_rate"] <= 1.0 and 0.0 <= result["reward"] <= 5.0
    assert "judge_parse_failures" not in result  # nothing is parsed


def test_reward_model_training_raises_held_out_accuracy():
    pairs = load_pairs(sample_file("pairs.jsonl"))
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(0)).tolist()
    held_out, train_pairs = [pairs[i] for i in order[:10]], [pairs[i] for i in order[10:]]
    tokenizer = tiny_tokenizer()
    model = tiny_reward_model(tokenizer, seed=1)
    before = pairwise_accuracy(model, tokenizer, held_out)
    torch.manual_seed(0)
    losses = train_reward_model(model, tokenizer, train_pairs, epochs=5, lr=1e-3, batch_size=8)
    after = pairwise_accuracy(model, tokenizer, held_out)
    print(
        f"reward model held-out pairwise accuracy: {before:.2f} -> {after:.2f}; "
        f"Bradley-Terry loss {losses[0]:.3f} -> {losses[-1]:.3f}"
    )
    assert losses[-1] < losses[0]
    assert after > before and after >= 0.8


# ---- configs and the CLI -----------------------------------------------------------------------------------
@pytest.mark.parametrize("option", ["full_scale", "full_scale_mistral7b"])
def test_task_configs_compose_and_match_the_constructor(option):
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    with initialize_config_module("alignlab.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"task={option}"])
    task_cfg = resolve_reward(OmegaConf.to_container(cfg.task, resolve=True))
    assert task_cfg.pop("_target_") == "full_scale.FullScaleTask"
    params = set(inspect.signature(FullScaleTask).parameters)
    assert set(task_cfg) == params, (
        f"keys not in FullScaleTask: {set(task_cfg) - params}; missing: {params - set(task_cfg)}"
    )
    assert cfg.sampling.samples_per_prompt == 2 and cfg.train.lr > 0


def test_cli_runs_tier_3_with_task_alone(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONPATH=str(ROOT))
    command = [
        sys.executable,
        "-m",
        "alignlab",
        "task=full_scale",
        "task.model=tiny",
        "task.max_new_tokens=4",
        "task.eval_prompts=2",
        "algo=dpo",
        "train.iterations=2",
        "train.checkpoint_every=1",
        "plot=false",
        f"hydra.run.dir={tmp_path}",
    ]
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {"reward", "kl_ref", "mean_length"} <= set(summary) and summary["task"] == "full_scale"
    assert (tmp_path / "samples.jsonl").exists() and (tmp_path / "checkpoint.pt").exists()
    bad = subprocess.run(
        command[:4] + ["task.model=/no/such/model", f"hydra.run.dir={tmp_path / 'bad'}"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert bad.returncode == 2 and "task.model=/no/such/model does not exist" in bad.stderr
