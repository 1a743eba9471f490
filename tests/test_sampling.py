"""Sampling regimes, sample reuse, mixing, determinism, checkpoint and resume."""

import pytest
import torch

from alignlab.core.objectives import DPO, PPO
from alignlab.core.sampling import Sampler, SamplingConfig
from alignlab.core.train import TrainConfig, train
from alignlab.errors import ConfigError
from alignlab.storage.run import RunStorage
from bandits import BanditTask

CFG = TrainConfig(iterations=20, lr=0.05, progress=False)


def strip_time(rows):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def test_same_seed_same_numbers_and_another_seed_other_numbers():
    task = BanditTask()
    a = strip_time(train(task, DPO(), SamplingConfig(), CFG, seed=1)[1])
    b = strip_time(train(task, DPO(), SamplingConfig(), CFG, seed=1)[1])
    c = strip_time(train(task, DPO(), SamplingConfig(), CFG, seed=2)[1])
    assert a == b and a != c


def test_semi_online_refreshes_the_sampler_every_s_updates():
    task = BanditTask()
    _, rows, _ = train(task, DPO(), SamplingConfig(sync_every=4), CFG, seed=0)
    # 20 rounds x 1 update: refreshes before rounds 5, 9, 13, 17 (rounds without a pair take no update).
    updates = sum(1 for r in rows if "loss/total" in r)
    assert rows[-1]["sampler/syncs"] == (updates - 1) // 4 or rows[-1]["sampler/syncs"] == updates // 4
    assert rows[-1]["sampler/syncs"] >= 3


def test_the_semi_online_sampler_lags_then_catches_up():
    task = BanditTask()
    policy = task.make_policy()
    sampler = Sampler(SamplingConfig(sync_every=3), task, policy, torch.Generator().manual_seed(0))
    with torch.no_grad():
        policy.logits += 1.0 * torch.arange(8)
    for _ in range(2):
        sampler.after_update()
    sampler.next_round()
    assert not torch.equal(sampler.frozen.logits, policy.logits), "2 updates < s = 3: still stale"
    sampler.after_update()
    _, _, _, behaviour = sampler.next_round()
    assert torch.equal(sampler.frozen.logits, policy.logits) and behaviour is sampler.frozen


def test_online_samples_from_the_live_policy_without_a_copy():
    task = BanditTask()
    policy = task.make_policy()
    sampler = Sampler(SamplingConfig(sync_every=1), task, policy, torch.Generator().manual_seed(0))
    assert sampler.frozen is None
    assert sampler.next_round()[3] is policy


def test_offline_data_is_fixed_and_every_prompt_is_used_once_per_pass():
    task = BanditTask()
    sampler = Sampler(
        SamplingConfig(sync_every=None, offline_prompts=8, prompts_per_round=4),
        task,
        task.make_policy(),
        torch.Generator().manual_seed(0),
    )
    data = sampler.offline.completions.clone()
    first, _, _, _ = sampler.next_round()
    second, _, _, _ = sampler.next_round()
    assert torch.equal(sampler.offline.completions, data)
    seen = torch.cat([first.completions, second.completions]).sort().values
    assert torch.equal(seen, data.sort().values), "one pass = the whole dataset"


def test_offline_fraction_mixes_offline_prompts_into_online_rounds():
    task = BanditTask()
    sampler = Sampler(
        SamplingConfig(sync_every=1, prompts_per_round=8, offline_fraction=0.25),
        task,
        task.make_policy(),
        torch.Generator().manual_seed(0),
    )
    offline, prompts, completions, _ = sampler.next_round()
    assert offline.num_groups == 2 and len(completions) == 6 * 4


def test_sample_reuse_takes_t_updates_per_round():
    task = BanditTask(reward="r2")
    cfg = TrainConfig(iterations=5, lr=0.05, progress=False)
    _, rows, _ = train(task, PPO(), SamplingConfig(updates_per_batch=3), cfg)
    assert [r["train/updates"] for r in rows] == [0.0, 3.0, 6.0, 9.0, 12.0, 15.0]  # 0: the evaluation at iteration 0
    assert rows[-1]["sampler/syncs"] == 0.0  # online with T > 1 samples from the live policy: no copy to sync


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(sync_every=0), "sync_every=0 is below 1"),
        (dict(samples_per_prompt=0), "samples_per_prompt=0 is below 1"),
        (dict(offline_fraction=1.5), "is not a fraction"),
    ],
)
def test_bad_regimes_raise_with_the_fix(bad, message):
    with pytest.raises(ConfigError, match=message + ".*Fix:"):
        SamplingConfig(**bad).check()


class Crash(Exception):
    pass


def test_an_interrupted_run_resumes_to_the_same_numbers(tmp_path):
    task = BanditTask()
    cfg = TrainConfig(iterations=20, lr=0.05, progress=False, checkpoint_every=5)
    reference = strip_time(train(task, PPO(), SamplingConfig(sync_every=3), cfg, seed=0)[1])

    class CrashingTask(BanditTask):
        calls = 0

        def evaluate(self, policy, generator=None):
            CrashingTask.calls += 1
            if CrashingTask.calls == 13:
                raise Crash
            return super().evaluate(policy, generator)

    with pytest.raises(Crash):
        train(CrashingTask(), PPO(), SamplingConfig(sync_every=3), cfg, seed=0, hooks=[RunStorage(tmp_path)])
    assert (tmp_path / "checkpoint.pt").exists()
    resumed = strip_time(train(task, PPO(), SamplingConfig(sync_every=3), cfg, seed=0, hooks=[RunStorage(tmp_path)])[1])
    assert resumed == reference


def test_a_crash_waits_for_the_checkpoint_in_flight(tmp_path, monkeypatch):
    """The checkpoint is written in the background; a crash (or Ctrl-C) must not reach the caller before it is on
    disk, or an immediate resume finds none (under load, test_an_interrupted_run_... saw no checkpoint.pt)."""
    import time

    import alignlab.storage.rundir as rundir

    real = rundir.write_with_checksum

    def slow(path, payload):
        time.sleep(0.5)  # a loaded machine's disk
        real(path, payload)

    monkeypatch.setattr(rundir, "write_with_checksum", slow)

    class CrashingTask(BanditTask):
        def evaluate(self, policy, generator=None):
            if policy is not None and CrashingTask.armed:
                raise Crash
            return super().evaluate(policy, generator)

    CrashingTask.armed = False
    cfg = TrainConfig(iterations=6, lr=0.05, progress=False, checkpoint_every=2, eval_every=3)

    class ArmAfterCheckpoint(RunStorage):
        def round_end(self, loop):
            super().round_end(loop)
            CrashingTask.armed = loop.iteration == 2  # the crash comes while iteration 2's checkpoint is written

    with pytest.raises(Crash):
        train(CrashingTask(), PPO(), SamplingConfig(), cfg, seed=0, hooks=[ArmAfterCheckpoint(tmp_path)])
    assert (tmp_path / "checkpoint.pt").exists()


def test_only_rank_zero_writes_the_run_directory(tmp_path, monkeypatch):
    from alignlab.storage.rundir import write_json

    monkeypatch.setenv("RANK", "1")
    write_json(tmp_path / "summary.json", {"reward": 1.0})
    assert not (tmp_path / "summary.json").exists()
    monkeypatch.setenv("RANK", "0")
    write_json(tmp_path / "summary.json", {"reward": 1.0})
    assert (tmp_path / "summary.json").exists()


def test_the_core_imports_nothing_that_reads_or_writes_files():
    """Issue 17: the loop and the sampler do no I/O; the run directory attaches through RunHooks (no import of
    alignlab/storage, or of the run machinery, anywhere in alignlab/core: no circle train <-> warmstart)."""
    import ast
    from pathlib import Path

    import alignlab.core

    found = []
    for path in Path(alignlab.core.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            found += [f"{path.name}: {n}" for n in names if n.startswith(("alignlab.storage", "alignlab.runs"))]
    assert found == []


def test_synthetic_llm_preference_does_not_import_its_task():
    import ast
    from pathlib import Path

    import synthetic_llm

    tree = ast.parse((Path(synthetic_llm.__file__).parent / "preference.py").read_text())
    modules = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert "synthetic_llm.task" not in modules and "_sample_eval" not in ast.unparse(tree)
