"""Data as a first-class object: recordings, replay, re-sampling from a saved policy, warm starts, mixtures."""

import json

import pandas as pd
import pytest
import torch

from alignlab.core.objectives import DPO, GRPO, PPO
from alignlab.core.reward_mix import MixtureSpec, with_reward_mixture
from alignlab.core.sampling import Sampler, SamplingConfig
from alignlab.core.train import TrainConfig, train
from alignlab.errors import ConfigError, DataError
from alignlab.storage.recording import ROLLOUTS, Recording
from alignlab.storage.run import RunStorage
from alignlab.storage.rundir import SUMMARY, write_json
from alignlab.storage.warmstart import POLICY, make_policies, save_policy
from bandits import BanditTask

CFG = TrainConfig(iterations=12, lr=0.05, progress=False)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def strip_time(rows):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def finished_run(run_dir, task, policy):
    """A run directory as the CLI leaves it with save_policy=true."""
    save_policy(run_dir, task, policy)
    write_json(run_dir / SUMMARY, {"reward": 0.0})
    return run_dir


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    from synthetic_llm import SyntheticLMTask

    return SyntheticLMTask(
        reward="min_length",
        cache_dir=str(tmp_path_factory.mktemp("cache")),
        reference_steps=20,
        corpus_size=256,
        eval_prompts=4,
        eval_samples_per_prompt=2,
    )


# ---- record and replay ----------------------------------------------------------------------------------
@pytest.mark.parametrize("objective", [DPO, PPO], ids=["dpo", "ppo"])
def test_bandit_offline_replay_in_recorded_order_reproduces_the_online_run(tmp_path, objective):
    task = BanditTask()
    _, online_rows, online = train(
        task, objective(), SamplingConfig(), CFG, seed=3, hooks=[RunStorage(tmp_path, record_rollouts=True)]
    )
    replay = SamplingConfig(sync_every=None, dataset=str(tmp_path), dataset_order="recorded")
    _, replay_rows, replayed = train(task, objective(), replay, CFG, seed=3, hooks=[RunStorage()])
    assert torch.equal(online.logits, replayed.logits)
    keys = [k for k in online_rows[-1] if k.startswith(("loss/", "eval/", "train/reward"))]
    assert "loss/total" in keys
    assert [[r.get(k) for k in keys] for r in online_rows] == [[r.get(k) for k in keys] for r in replay_rows]


@pytest.mark.parametrize("objective", [DPO, GRPO], ids=["dpo", "grpo"])
def test_synthetic_llm_offline_replay_in_recorded_order_reproduces_the_online_run(tmp_path, tiny_lm, objective):
    cfg = TrainConfig(iterations=4, lr=2e-4, progress=False, eval_every=2)
    _, online_rows, online = train(
        tiny_lm, objective(), SamplingConfig(), cfg, seed=0, hooks=[RunStorage(tmp_path, record_rollouts=True)]
    )
    replay = SamplingConfig(sync_every=None, dataset=str(tmp_path / ROLLOUTS), dataset_order="recorded")
    _, replay_rows, replayed = train(tiny_lm, objective(), replay, cfg, seed=0, hooks=[RunStorage()])
    for a, b in zip(online.model.parameters(), replayed.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert [r.get("loss/total") for r in online_rows] == [r.get("loss/total") for r in replay_rows]
    assert all("loss/total" in r for r in online_rows if r["iteration"] > 0)


def test_a_recording_has_one_row_per_sample_with_the_behaviour_logps(tmp_path):
    task = BanditTask()
    sampling = SamplingConfig(sync_every=3, prompts_per_round=2, samples_per_prompt=4)
    _, rows, _ = train(task, DPO(), sampling, CFG, seed=0, hooks=[RunStorage(tmp_path, record_rollouts=True)])
    frame = pd.read_parquet(tmp_path / ROLLOUTS)
    assert len(frame) == CFG.iterations * 2 * 4
    assert sorted(frame["round"].unique()) == list(range(1, CFG.iterations + 1))
    assert frame.groupby("round")["sync"].first().tolist()[-1] <= rows[-1]["sampler/syncs"]
    ref = torch.log_softmax(task.ref_logits, 0)
    first = frame[frame["round"] == 1]  # drawn before any update: the sampler is the reference
    behaviour = torch.tensor(first["behaviour_logp"].to_numpy().copy()).float()
    assert torch.allclose(behaviour, ref[first["completion"].to_numpy()])
    assert torch.allclose(torch.tensor(frame["reward"].to_numpy()).float(), task.reward([], frame["completion"].values))


@pytest.mark.parametrize("objective", [DPO, GRPO], ids=["dpo", "grpo"])
def test_a_round_mixing_offline_and_online_data_is_recorded_with_every_rows_behaviour_logps(tmp_path, objective):
    """sampling.offline_fraction: the offline rows carry the reference's log-probs (their sampler: the task's
    offline data are reference samples), and the recording replays the mixed run exactly."""
    task = BanditTask()
    mixed = SamplingConfig(prompts_per_round=4, offline_fraction=0.5, offline_prompts=8)
    _, rows, online = train(task, objective(), mixed, CFG, seed=1, hooks=[RunStorage(tmp_path, record_rollouts=True)])
    frame = pd.read_parquet(tmp_path / ROLLOUTS)
    assert frame["behaviour_logp"].notna().all() and len(frame) == CFG.iterations * 4 * 4
    assert frame.groupby("round")["offline"].sum().tolist() == [8] * CFG.iterations  # 2 of 4 prompts, 4 samples each
    offline = frame[frame["offline"]]
    reference = torch.log_softmax(task.ref_logits, 0)[offline["completion"].to_numpy()]
    assert torch.allclose(torch.tensor(offline["behaviour_logp"].to_numpy()).float(), reference)
    replay = SamplingConfig(sync_every=None, prompts_per_round=4, dataset=str(tmp_path), dataset_order="recorded")
    _, replay_rows, replayed = train(task, objective(), replay, CFG, seed=1, hooks=[RunStorage()])
    assert torch.equal(online.logits, replayed.logits)
    assert [r.get("loss/total") for r in rows] == [r.get("loss/total") for r in replay_rows]


def test_an_offline_run_is_recorded_with_behaviour_logps_and_a_file_missing_some_is_refused(tmp_path):
    task = BanditTask()
    offline = SamplingConfig(sync_every=None, offline_prompts=8)
    train(task, DPO(), offline, CFG, seed=0, hooks=[RunStorage(tmp_path, record_rollouts=True)])
    frame = pd.read_parquet(tmp_path / ROLLOUTS)
    assert frame["offline"].all() and frame["behaviour_logp"].notna().all()
    frame.loc[0, "behaviour_token_logps"] = None
    frame.to_parquet(tmp_path / "partial.parquet")
    with pytest.raises(DataError, match="1 of the recording's .* rows have no behaviour_token_logps"):
        Recording(tmp_path / "partial.parquet", task, 4)


def test_a_resumed_run_continues_the_recording_without_duplicates(tmp_path):
    task = BanditTask()
    cfg = TrainConfig(iterations=10, lr=0.05, progress=False, checkpoint_every=4)
    _, _, _ = train(
        task, DPO(), SamplingConfig(), cfg, seed=0, hooks=[RunStorage(tmp_path / "whole", record_rollouts=True)]
    )
    killed = TrainConfig(iterations=6, lr=0.05, progress=False, checkpoint_every=4)  # rounds 5, 6 after the checkpoint
    train(task, DPO(), SamplingConfig(), killed, seed=0, hooks=[RunStorage(tmp_path / "resumed", record_rollouts=True)])
    train(task, DPO(), SamplingConfig(), cfg, seed=0, hooks=[RunStorage(tmp_path / "resumed", record_rollouts=True)])
    whole = pd.read_parquet(tmp_path / "whole" / ROLLOUTS)
    resumed = pd.read_parquet(tmp_path / "resumed" / ROLLOUTS)
    assert len(resumed) == len(whole)
    pd.testing.assert_frame_equal(whole, resumed)


def test_shuffled_order_uses_every_recorded_group_once_per_pass(tmp_path):
    task = BanditTask()
    train(
        task,
        DPO(),
        SamplingConfig(prompts_per_round=4),
        CFG,
        seed=0,
        hooks=[RunStorage(tmp_path, record_rollouts=True)],
    )
    cfg = SamplingConfig(sync_every=None, prompts_per_round=6, dataset=str(tmp_path))
    source = RunStorage().offline_source(task, cfg)
    sampler = Sampler(cfg, task, task.make_policy(), torch.Generator().manual_seed(0), source)
    assert len(sampler.offline) == CFG.iterations * 4 * 4
    seen = torch.cat([sampler.next_round()[0].completions for _ in range(8)])  # 8 rounds x 6 = 48 groups
    assert torch.equal(seen.sort().values, sampler.offline.completions.sort().values)


def test_a_jsonl_file_in_the_recording_schema_is_offline_data(tmp_path):
    path = tmp_path / "data.jsonl"
    rows = [{"prompt": 0, "completion": a, "reward": float(a == 7)} for a in (7, 0, 6, 1)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    recording = Recording(path, BanditTask(), samples_per_prompt=2)
    assert recording.data.completions.tolist() == [7, 0, 6, 1] and recording.data.old_logps is None


# ---- a finished run's policy, reused ------------------------------------------------------------------
def test_init_from_starts_at_the_runs_policy_with_the_reference_kept_or_moved(tmp_path):
    task = BanditTask()
    _, _, first = train(task, DPO(), SamplingConfig(), CFG, seed=0)
    finished_run(tmp_path, task, first)
    policy, kept = make_policies(task, str(tmp_path), "keep")
    assert torch.equal(policy.logits, first.logits) and torch.equal(kept.logits, task.ref_logits)
    policy, moved = make_policies(task, str(tmp_path), "move")
    assert torch.equal(moved.logits, first.logits) and not moved.logits.requires_grad
    _, rows, _ = train(
        task, DPO(), SamplingConfig(), CFG, seed=0, hooks=[RunStorage(init_from=str(tmp_path), init_reference="move")]
    )
    assert rows[0]["eval/kl_ref"] > 0.01  # eval/kl_ref is to the task's reference: the run started away from it


def test_offline_data_resampled_from_a_saved_policy_carries_its_logps(tmp_path):
    task = BanditTask()
    saved = task.make_policy()
    with torch.no_grad():
        saved.logits += torch.arange(8.0)
    finished_run(tmp_path, task, saved)
    cfg = SamplingConfig(sync_every=None, offline_prompts=64, behaviour_from=str(tmp_path))
    source = RunStorage().offline_source(task, cfg)
    sampler = Sampler(cfg, task, task.make_policy(), torch.Generator().manual_seed(0), source)
    data = sampler.offline
    assert torch.allclose(data.old_logps.sum(), torch.log_softmax(saved.logits, 0)[data.completions])
    assert data.completions.float().mean() > 5.0  # drawn from the saved policy, not the reference (mean arm 1.2)


# ---- rewards combined ---------------------------------------------------------------------------------
def test_a_per_sample_mixture_is_the_weighted_mean_and_each_component_is_logged():
    task = with_reward_mixture(BanditTask(), {"weights": {"r1": 3.0, "r2": 1.0}}, CFG.iterations)
    arms = torch.arange(8)
    r1, r2 = task.reward_function("r1")([0] * 8, arms), task.reward_function("r2")([0] * 8, arms)
    assert torch.allclose(task.reward([0] * 8, arms), 0.75 * r1 + 0.25 * r2)
    _, rows, policy = train(task, DPO(), SamplingConfig(), CFG, seed=0)
    assert {"train/reward/r1", "train/reward/r2", "eval/reward/r1", "eval/reward/r2"} <= set(rows[-1])
    probs = policy.probs().double().detach()
    assert rows[-1]["eval/reward/r2"] == pytest.approx(float((probs * r2.double()).sum()), abs=1e-12)
    assert rows[-1]["eval/reward"] == pytest.approx(
        0.75 * rows[-1]["eval/reward/r1"] + 0.25 * rows[-1]["eval/reward/r2"]
    )


def test_a_schedule_switches_the_reward_at_its_phase_boundary():
    schedule = {"schedule": [{"iterations": 5, "weights": {"r1": 1}}, {"iterations": 7, "weights": {"r2": 1}}]}
    task = with_reward_mixture(BanditTask(), schedule, CFG.iterations)
    _, rows, _ = train(task, DPO(), SamplingConfig(), CFG, seed=0)
    assert all(r["train/reward"] == r["train/reward/r1"] for r in rows[1:6])
    assert all(r["train/reward"] == r["train/reward/r2"] for r in rows[6:])


def test_a_mixture_by_prompt_domain_scores_each_prompt_with_its_domains_reward():
    class Domains(BanditTask):
        def prompt_domains(self, prompts):
            return ["a" if p % 2 == 0 else "b" for p in prompts]

    task = with_reward_mixture(Domains(), {"domains": {"a": {"r1": 1}, "b": {"r2": 1}}}, 10)
    arms, prompts = torch.tensor([7, 7, 0, 0]), [0, 1, 0, 1]
    assert task.reward(prompts, arms).tolist() == [
        1.0,
        task.reward_function("r2")([0], torch.tensor([7])).item(),
        task.reward_function("r1")([0], torch.tensor([0])).item(),
        1.0,
    ]


def test_recording_on_several_processes_is_refused_before_any_work(tmp_path, monkeypatch):
    """What `accelerate launch --num_processes 2` sets, without launching: only rank 0 writes the run directory,
    so a recording would hold only its share; the run stops with one line naming the fix."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="only rank 0's share") as error:
        train(BanditTask(), DPO(), SamplingConfig(), CFG, hooks=[RunStorage(tmp_path, record_rollouts=True)])
    assert "Fix:" in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / ROLLOUTS).exists()


# ---- the contextual bandit -----------------------------------------------------------------------------
def small_contextual(**kw):
    from bandits import ContextualBanditTask

    args = dict(
        num_actions=10,
        context_dim=6,
        num_train_contexts=8,
        num_eval_contexts=4,
        feature_dim=8,
        hidden_dim=16,
        reference_samples=2000,
        r1_peak=7,
        r2_peak=2,
        width=1.5,
    )
    return ContextualBanditTask(**(args | kw))


def test_the_contextual_reference_is_fitted_to_the_sampled_histogram():
    from bandits import cauchy_tanh_histogram
    from bandits.contextual import sampled_cauchy_tanh_histogram

    sampled = sampled_cauchy_tanh_histogram(100, 200_000, torch.Generator().manual_seed(0))
    assert 0.5 * (sampled - cauchy_tanh_histogram(100)).abs().sum() < 0.02
    task = small_contextual(reference_epochs=300)
    probs = task.make_reference().log_probs(torch.arange(12)).exp().double()
    assert (0.5 * (probs - task.histogram).abs().sum(-1)).max() < 0.05  # every context, held-out ones too
    assert task.evaluate(task.make_reference())["kl_ref"] == 0.0


def test_the_contextual_evaluation_is_exact_per_context():
    task = small_contextual()
    policy = task.make_policy()
    with torch.no_grad():
        policy.net.net[-1].bias += torch.arange(10.0) * 0.3
    held_out = torch.arange(8, 12)
    probs = policy.log_probs(held_out).exp().double().detach()
    assert task.evaluate(policy)["reward"] == pytest.approx(float((probs @ task.reward_fn.table.double()).mean()))


def test_contextual_online_dpo_learns_and_replays_exactly(tmp_path):
    task = small_contextual()
    cfg = TrainConfig(iterations=30, lr=0.01, progress=False, eval_every=10)
    sampling = SamplingConfig(prompts_per_round=4, samples_per_prompt=4)
    _, rows, online = train(task, DPO(), sampling, cfg, seed=0, hooks=[RunStorage(tmp_path, record_rollouts=True)])
    assert rows[-1]["eval/reward"] > task.evaluate(task.make_reference())["reward"] + 0.1
    replay = SamplingConfig(sync_every=None, samples_per_prompt=4, dataset=str(tmp_path), dataset_order="recorded")
    _, _, replayed = train(task, DPO(), replay, cfg, seed=0, hooks=[RunStorage()])
    for a, b in zip(online.parameters(), replayed.parameters(), strict=True):
        assert torch.equal(a, b)


# ---- the command line -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_record_show_replay_and_warm_start_from_the_command_line(cli):
    from tests.conftest import read_summary

    base = ["train.iterations=6", "train.progress=false", "plot=false"]
    cli("record_rollouts=true", "save_policy=true", *base, "hydra.run.dir=online")
    online = cli.dir / "online"
    assert (online / ROLLOUTS).is_dir() and (online / POLICY).exists()
    shown = cli("online", module="alignlab.storage.data_cli").stdout
    assert "192 samples in 6 rounds" in shown  # 6 rounds x 8 prompts x 4 samples
    cli(
        "sampling=offline",
        f"sampling.dataset={online}",
        "sampling.dataset_order=recorded",
        *base,
        "hydra.run.dir=replay",
    )
    assert read_summary(cli.dir / "replay")["reward"] == read_summary(online)["reward"]
    cli(f"init_from={online}", "init_reference=move", *base, "hydra.run.dir=warm")
    assert read_summary(cli.dir / "warm")["kl_ref"] > read_summary(online)["kl_ref"]


@pytest.mark.parametrize("group", ["data", "mix"])
def test_every_data_and_mix_option_composes(group):
    import importlib.resources

    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    folder = importlib.resources.files("alignlab.conf") / group
    names = sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))
    assert names
    GlobalHydra.instance().clear()
    with initialize_config_module("alignlab.conf", version_base="1.3"):
        for name in names:
            cfg = compose("config", overrides=[f"{group}={name}", "task=synthetic_llm", "task.reward=arithmetic"])
            if group == "mix":
                spec = MixtureSpec.from_config(OmegaConf.to_container(cfg.reward_mix), cfg.train.iterations)
                assert spec.names == ["verifiable", "nonverifiable"]  # roles: synthetic_llm's arithmetic, preference
            else:
                assert cfg.sampling.name == ("online" if name == "online" else "offline")
    GlobalHydra.instance().clear()


# ---- the data findings' verdicts -------------------------------------------------------------------------
def coverage_rows(values):
    return pd.DataFrame([{"algo": a, "data": d, "seed": 0, "reward": r} for (a, d), r in values.items()])


@pytest.mark.parametrize(
    "dpo, bon, status",
    [
        ((0.9, 0.5, 0.1), (0.9, 0.85, 0.1), "holds"),  # DPO keeps half its gap, Best-of-2 closes it
        ((0.9, 0.88, 0.1), (0.9, 0.85, 0.1), "does not hold"),  # shuffling closes DPO's gap
        ((0.9, 0.5, 0.1), (0.9, 0.2, 0.1), "does not hold"),  # Best-of-2 does not close it either
        ((0.5, 0.5, 0.49), (0.9, 0.85, 0.1), "inconclusive"),  # no online advantage to explain
    ],
)
def test_the_coverage_verdict_follows_its_criterion(dpo, bon, status):
    from alignlab.science.findings_data import data_coverage

    values = {}
    for algo, triple in (("dpo", dpo), ("best_of_n", bon)):
        values.update({(algo, d): r for d, r in zip(("online", "shuffled_online", "reference"), triple, strict=True)})
    verdict = data_coverage(coverage_rows(values), pd.DataFrame())
    assert verdict.status == status
    assert verdict.numbers["dpo/online"] == dpo[0]


def test_the_quality_verdict_reports_the_skipped_pairs():
    from alignlab.science.findings_data import data_quality

    summaries = coverage_rows({("dpo", "online"): 1.0, ("dpo", "reference"): 0.2, ("dpo", "final_policy"): 0.3})
    metrics = pd.DataFrame(
        {"data": ["final_policy", "final_policy", "reference"], "pairs/skipped_fraction": [1.0, 0.8, 0.1]}
    )
    verdict = data_quality(summaries, metrics)
    assert verdict.status == "holds" and verdict.numbers["gap_closed"] == pytest.approx(0.125)
    assert verdict.numbers["final_policy/skipped_pairs"] == pytest.approx(0.9)


def test_the_curriculum_verdict_compares_orders_and_the_mixture():
    from alignlab.science.findings_data import reward_curriculum

    scores = {
        "verifiable": (0.8, 0.5),
        "nonverifiable": (0.0, 0.9),
        "nv_then_v": (0.7, 0.6),
        "v_then_nv": (0.2, 0.8),
        "mixed": (0.7, 0.55),
    }
    rows = [{"mix": m, "seed": 0, "reward/verifiable": v, "reward/nonverifiable": nv} for m, (v, nv) in scores.items()]
    assert reward_curriculum(pd.DataFrame(rows), pd.DataFrame()).status == "holds"
    rows[2]["reward/verifiable"] = 0.1
    assert reward_curriculum(pd.DataFrame(rows), pd.DataFrame()).status == "does not hold"


@pytest.mark.slow
def test_the_preference_reward_model_learns_the_hidden_rule_and_its_optimum_is_not_the_right_answer(tmp_path):
    from alignlab.lm.policy import TokenCompletions
    from synthetic_llm import SyntheticLMTask
    from synthetic_llm.preference import hidden_preference

    task = SyntheticLMTask(reward="preference", cache_dir=str(tmp_path), reference_steps=50, corpus_size=512)
    tok = task.tokenizer
    prompts = [task.sample_prompts(1, torch.Generator().manual_seed(i))[0] for i in range(64)]
    sums = [str(int(a) + int(b)) for a, b in (tok.decode(p).rstrip("=").split("+") for p in prompts)]

    def answers(texts):
        rows = [torch.cat([tok.encode(t), torch.tensor([tok.eos_id])]) for t in texts]
        width = max(len(r) for r in rows)
        tokens, mask = torch.zeros(len(rows), width, dtype=torch.long), torch.zeros(len(rows), width)
        for i, r in enumerate(rows):
            tokens[i, : len(r)], mask[i, : len(r)] = r, 1.0
        return TokenCompletions(tokens, mask)

    right = answers(sums)
    padded = answers([(s + "123456")[:6] for s in sums])  # six characters: wrong, but the preferred style
    assert hidden_preference(padded, tok.eos_id).mean() > hidden_preference(right, tok.eos_id).mean()
    model, correct = task.reward_function("preference"), task.reward_function("arithmetic")
    assert model(prompts, padded).mean() > model(prompts, right).mean() + 0.2
    assert correct(prompts, right).mean() == 1.0 and correct(prompts, padded).mean() == 0.0


def test_alignlab_data_refuses_a_recording_with_a_round_missing_in_one_line(tmp_path, capsys):
    from alignlab.storage import data_cli

    train(BanditTask(), DPO(), SamplingConfig(), CFG, seed=0, hooks=[RunStorage(tmp_path, record_rollouts=True)])
    data_cli.main([str(tmp_path), "--rounds", "2"])
    assert f"{CFG.iterations * 32} samples in {CFG.iterations} rounds" in capsys.readouterr().out
    (tmp_path / ROLLOUTS / "round-000002.parquet").unlink()
    with pytest.raises(SystemExit) as exit:
        data_cli.main([str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit.value.code == 2 and len(err) == 1 and "round 2 (round-000002.parquet) is missing" in err[0]
