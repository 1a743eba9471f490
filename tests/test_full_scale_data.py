"""Tier 3's data as a first-class object, on the tiny random Llama (task.model=tiny): reward mixtures (per sample,
by prompt domain, a schedule), recordings and their exact replay, warm starts and re-sampling from a saved run."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pandas as pd
import pytest
import torch

from alignlab.core.objectives import DPO, GRPO
from alignlab.core.reward_mix import with_reward_mixture
from alignlab.core.sampling import SamplingConfig
from alignlab.core.train import TrainConfig, train
from alignlab.errors import ConfigError
from alignlab.storage.recording import ROLLOUTS, Recording
from alignlab.storage.run import RunStorage
from alignlab.storage.rundir import SUMMARY, write_json
from alignlab.storage.warmstart import save_policy
from full_scale import FullScaleTask
from full_scale.tiny import tiny_reward_model, tiny_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

ROLES = {"verifiable": "arithmetic", "hard": "length", "nonverifiable": "reward_model"}
SAMPLING = SamplingConfig(prompts_per_round=2, samples_per_prompt=2)


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory) -> str:
    """A random tiny reward model: a non-verifiable reward with signal (no ties) on any text."""
    path = tmp_path_factory.mktemp("rm")
    tokenizer = tiny_tokenizer()
    tiny_reward_model(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def make_task(**kwargs) -> FullScaleTask:
    args = dict(model="tiny", device="cpu", max_new_tokens=6, eval_prompts=2, eval_samples_per_prompt=1)
    return FullScaleTask(**(args | dict(num_problems=12) | kwargs))


def quick(iterations: int = 2, **kwargs) -> TrainConfig:
    return TrainConfig(**(dict(iterations=iterations, lr=1e-2, eval_every=iterations, progress=False) | kwargs))


def finished(run_dir, task, policy):
    """A run directory as the CLI leaves it with save_policy=true."""
    save_policy(run_dir, task, policy)
    write_json(run_dir / SUMMARY, {"reward": 0.0})
    return str(run_dir)


def weights(policy) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in policy.parameters() if p.requires_grad])


# ---- reward mixtures ----------------------------------------------------------------------------------------
def test_a_weights_mixture_checks_every_sample_so_its_prompts_are_the_generated_problems(reward_model):
    task = make_task(reward_model=reward_model)
    mixed = with_reward_mixture(task, {"weights": {"verifiable": 1, "nonverifiable": 3}}, 2, ROLES)
    assert set(task.prompt_domains(task.train_prompts + task.eval_prompts)) == {"math"}
    assert len(task.train_prompts) == 10 and len(task.eval_prompts) == 2  # 12 problems, eval_prompts held out
    _, rows, _ = train(mixed, DPO(), SAMPLING, quick())
    last = rows[-1]
    for stage in ("train", "eval"):
        parts = [last[f"{stage}/reward/{role}"] for role in ("verifiable", "nonverifiable")]
        assert last[f"{stage}/reward"] == pytest.approx(0.25 * parts[0] + 0.75 * parts[1], abs=1e-6)


def test_a_domains_mixture_trains_on_both_kinds_of_prompts_and_evaluates_each_reward_on_its_own(reward_model):
    task = make_task(reward_model=reward_model)
    spec = {"domains": {"math": {"verifiable": 1}, "chat": {"nonverifiable": 1}}}
    mixed = with_reward_mixture(task, spec, 2, ROLES)
    train_domains = task.prompt_domains(task.train_prompts)
    assert train_domains.count("math") == 10 and train_domains.count("chat") == 22  # the file's 24 chat prompts
    assert task.prompt_domains(task.eval_prompts) == ["math", "math", "chat", "chat"]
    policy = task.make_policy()
    result = mixed.evaluate(policy, torch.Generator().manual_seed(0))
    # each component on the held-out prompts of its own domain, on the evaluation's own samples
    generator = torch.Generator().manual_seed(0)
    samples = policy.sample(task.eval_prompts, 1, generator)
    chat = torch.tensor([2, 3])
    expected = task.reward_function("reward_model")([task.eval_prompts[i] for i in (2, 3)], samples[chat]).mean()
    assert result["reward/nonverifiable"] == pytest.approx(float(expected), abs=1e-6)
    # eval/reward is the mixture: here the mean of 2 math samples (checker) and 2 chat samples (reward model)
    assert result["reward"] == pytest.approx(0.5 * (result["reward/verifiable"] + expected.item()), abs=1e-6)
    assert {"reward/verifiable", "reward/nonverifiable", "kl_ref"} <= set(result)
    _, rows, _ = train(mixed, DPO(), SAMPLING, quick())
    assert {"train/reward/verifiable", "eval/reward/verifiable", "eval/reward/nonverifiable"} <= set(rows[-1])


def test_per_domain_weights_score_each_hand_made_prompt_with_its_domains_reward(reward_model):
    task = make_task(reward="length", reward_model=reward_model)
    spec = {"domains": {"math": {"arithmetic": 1}, "chat": {"length": 3, "reward_model": 1}}}
    mixed = with_reward_mixture(task, spec, 2)
    problem = next(p for p in task.train_prompts if task.record(p).answer is not None)
    chat = next(p for p in task.train_prompts if task.record(p).answer is None)
    answer = task.record(problem).answer
    prompts = [problem, chat, problem, chat]
    texts = [answer, "hi", str(int(answer) + 1), "hello"]
    completions = task.tokenize_completions(texts, ["test"] * 4, prompts)  # + the end token: 2, 3, 2, 6 tokens
    rm = task.reward_function("reward_model")([chat, chat], completions[torch.tensor([1, 3])])
    expected = [1.0, (3 * (1 - 3 / 6) + rm[0].item()) / 4, 0.0, (3 * (1 - 6 / 6) + rm[1].item()) / 4]
    assert mixed.reward(prompts, completions).tolist() == pytest.approx(expected, abs=1e-6)
    components = mixed.last_reward_components
    assert components["reward/arithmetic"][[0, 2]].tolist() == [1.0, 0.0]
    assert torch.isnan(components["reward/arithmetic"][[1, 3]]).all()  # the checker never sees a chat prompt
    assert torch.isnan(components["reward/length"][[0, 2]]).all()


def test_a_schedule_logs_each_component_and_switches_at_its_boundary(reward_model):
    task = make_task(reward_model=reward_model)
    schedule = {
        "schedule": [
            {"iterations": 2, "weights": {"verifiable": 0, "nonverifiable": 1}},
            {"iterations": 1, "weights": {"verifiable": 1, "nonverifiable": 0}},
        ]
    }
    mixed = with_reward_mixture(task, schedule, 3, ROLES)
    _, rows, _ = train(mixed, DPO(), SAMPLING, quick(3))
    trained = rows[1:]
    assert [r["train/reward"] == r["train/reward/nonverifiable"] for r in trained] == [True, True, False]
    assert trained[-1]["train/reward"] == trained[-1]["train/reward/verifiable"]
    assert {"eval/reward/verifiable", "eval/reward/nonverifiable"} <= set(rows[0]) | set(trained[-1])


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"domains": {"code": {"length": 1}}}, "not a tier-3 prompt domain"),
        ({"weights": {"nonverifiable": 1}}, "task.roles.nonverifiable=reward_model"),
        ({"weights": {"reward_model": 1}}, "task.reward_model="),
    ],
    ids=["unknown-domain", "no-nonverifiable-role", "reward-model-without-a-path"],
)
def test_a_tier3_mixture_it_cannot_build_is_one_line_naming_the_fix(spec, message):
    with pytest.raises(ConfigError, match=message):
        with_reward_mixture(make_task(), spec, 2, {"hard": "length", "verifiable": "arithmetic"})


# ---- recordings, replay, warm starts, re-sampling -----------------------------------------------------------
@pytest.mark.parametrize("objective", [DPO, GRPO], ids=["dpo", "grpo"])
def test_a_tier3_recording_replayed_in_recorded_order_reproduces_the_online_run(tmp_path, reward_model, objective):
    task = make_task(reward="reward_model", reward_model=reward_model)
    _, online_rows, online = train(
        task, objective(), SAMPLING, quick(3), hooks=[RunStorage(tmp_path, record_rollouts=True)]
    )
    assert all("loss/total" in r for r in online_rows[1:])
    frame = pd.read_parquet(tmp_path / ROLLOUTS)
    assert len(frame) == 3 * 2 * 2 and frame["behaviour_logp"].notna().all() and not frame["offline"].any()
    assert frame["prompt_text"].str.len().min() > 0 and "completion_text" in frame
    replay = SamplingConfig(
        sync_every=None, prompts_per_round=2, samples_per_prompt=2, dataset=str(tmp_path), dataset_order="recorded"
    )
    _, replay_rows, replayed = train(task, objective(), replay, quick(3), hooks=[RunStorage()])
    assert torch.equal(weights(online), weights(replayed))
    assert [r.get("loss/total") for r in online_rows] == [r.get("loss/total") for r in replay_rows]


def test_init_from_and_behaviour_from_a_finished_tier3_run(tmp_path, reward_model):
    task = make_task(reward="reward_model", reward_model=reward_model)
    _, _, first = train(task, DPO(), SAMPLING, quick(2))
    (tmp_path / "first").mkdir()
    run = finished(tmp_path / "first", task, first)
    _, rows, warm = train(
        task, DPO(), SAMPLING, quick(1, lr=1e-12), hooks=[RunStorage(init_from=run, init_reference="move")]
    )
    assert torch.allclose(weights(warm), weights(first), atol=1e-9)  # it started at the first run's policy
    assert abs(rows[0]["eval/kl_ref"]) > 1e-3  # an estimate, to the task's reference: the run started away
    assert rows[1]["loss/total"] == pytest.approx(0.693147, abs=1e-5)  # DPO at pi = pi_ref (moved): log 2
    offline = SamplingConfig(sync_every=None, prompts_per_round=2, samples_per_prompt=2, offline_prompts=3)
    resampled = SamplingConfig(**(vars(offline) | {"behaviour_from": run}))
    from alignlab.core.sampling import Sampler

    source = RunStorage().offline_source(task, resampled)
    data = Sampler(resampled, task, task.make_policy(), torch.Generator().manual_seed(0), source).offline
    with torch.no_grad():
        expected = first.logprobs(data.prompts, data.completions).sum()
    assert torch.allclose(data.old_logps.sum(), expected, atol=1e-5)  # drawn by, and scored under, the saved policy
    _, rows, _ = train(task, DPO(), resampled, quick(2), hooks=[RunStorage()])
    assert rows[-1]["train/updates"] == 2.0


@pytest.mark.parametrize("objective", [DPO, GRPO], ids=["dpo", "grpo"])
def test_rounds_mixing_offline_and_online_data_are_recorded_with_behaviour_logps_and_replay(
    tmp_path, reward_model, objective
):
    """sampling.offline_fraction on tier 3, whose offline data (the pairs file) carries no log-probs: the offline
    rows are recorded with the reference's (before the fix such rounds had no behaviour log-probs at all), and
    the recording replays the run."""
    task = make_task(reward="reward_model", reward_model=reward_model, pairs="sample")
    mixed = SamplingConfig(prompts_per_round=2, samples_per_prompt=2, offline_fraction=0.5, offline_prompts=4)
    _, rows, online = train(task, objective(), mixed, quick(3), hooks=[RunStorage(tmp_path, record_rollouts=True)])
    frame = pd.read_parquet(tmp_path / ROLLOUTS)
    assert frame["behaviour_logp"].notna().all() and frame.groupby("round")["offline"].sum().tolist() == [2, 2, 2]
    rows_offline = torch.tensor(frame.index[frame["offline"]].to_numpy())
    offline = Recording(tmp_path, task, 2).data.select(rows_offline, samples_per_prompt=2)
    with torch.no_grad():
        reference = task.make_reference().logprobs(offline.prompts, offline.completions).sum()
    assert torch.allclose(offline.old_logps.sum(), reference, atol=1e-3)
    replay = SamplingConfig(
        sync_every=None, prompts_per_round=2, samples_per_prompt=2, dataset=str(tmp_path), dataset_order="recorded"
    )
    _, replay_rows, _ = train(task, objective(), replay, quick(3), hooks=[RunStorage()])
    # Not bit for bit: the run took the offline rows' reference log-probs in one forward over the whole offline
    # set, the replay in one over the round (measured: losses equal to 1e-6).
    losses = [r["loss/total"] for r in rows[1:]]
    assert losses == pytest.approx([r["loss/total"] for r in replay_rows[1:]], rel=1e-4)


def test_more_offline_prompts_than_pairs_is_refused_with_the_count(tmp_path):
    """A 40-row pairs file with sampling.offline_prompts=1000 once trained on 40 pairs without a word. The
    refusal comes when the sampler asks for the data, after the model's two loading lines, so it is tested
    here rather than in tests/test_bad_input.py's one-line table."""
    from tests.test_bad_input import T3, run_main

    code, stderr = run_main(
        [*T3, "sampling=offline", "task.pairs=sample", "sampling.offline_prompts=1000", "train.progress=false"],
        tmp_path,
    )
    errors = [line for line in stderr.splitlines() if line.startswith("alignlab: error:")]
    assert code == 2 and "Traceback" not in stderr and len(errors) == 1
    assert "sampling.offline_prompts=1000" in errors[0] and "(40)" in errors[0]
    assert "Fix: set sampling.offline_prompts=40 or fewer" in errors[0]
