"""A run killed at any moment and run again ends with exactly the numbers of an uninterrupted run, and a
checkpoint is never resumed under another configuration.

Kills are simulated in-process by raising `Killed` (a BaseException, like the signal a kill delivers, that no
handler of ours catches) at moments drawn at random: in an iteration, during a checkpoint's write (after the
temporary file is written, before it is renamed), halfway through appending metrics, and in the window after
the last checkpoint and before summary.json. One test kills a real process with SIGKILL.
"""

from __future__ import annotations

import io
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from alignlab.errors import ConfigError, DataError
from alignlab.runs import cli
from alignlab.storage import rundir
from tests.conftest import run_results

TIER1 = ["train.iterations=63", "train.checkpoint_every=7", "train.progress=false", "plot=false"]
TIER2 = [
    "task=synthetic_llm",
    "task.corpus_size=64",
    "task.reference_steps=5",
    "task.eval_prompts=4",
    "task.eval_samples_per_prompt=2",
    "train.iterations=8",
    "train.checkpoint_every=2",
    "train.eval_every=2",
    "sampling.prompts_per_round=4",
    "train.progress=false",
    "plot=false",
]

TIER3 = [
    "task=full_scale",
    "task.model=tiny",
    "task.device=cpu",
    "task.max_new_tokens=4",
    "task.eval_prompts=2",
    "train.iterations=4",
    "train.checkpoint_every=2",
    "train.eval_every=2",
    "sampling.prompts_per_round=2",
    "train.progress=false",
    "plot=false",
]


class Killed(BaseException):
    """What a kill does to the run: it stops, wherever it is."""


def config(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_module("alignlab.conf", version_base="1.3"):
        return compose("config", overrides=overrides)


def kill_at(monkeypatch, target, name: str, call: int, before=None) -> None:
    """Make the `call`-th call of target.name raise Killed (after `before(*args)` when given)."""
    original = getattr(target, name)
    count = {"n": 0}

    def wrapper(*args, **kwargs):
        count["n"] += 1
        if count["n"] == call:
            if before is not None:
                before(*args, **kwargs)
            raise Killed(f"{name} #{call}")
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, wrapper)


def half_written_checkpoint(path, data):
    """A kill during a write: the temporary file exists, half full, and was never renamed."""
    tmp = Path(path).parent / f".{Path(path).name}.killed{rundir.TMP_SUFFIX}"
    tmp.write_bytes(data[: len(data) // 2])


def half_appended_metrics(self, rows):
    """A kill halfway through appending rows to metrics.csv."""
    if self.columns and self.path.exists():
        text = rundir.metrics_text(rows[self.rows_written :], self.columns, header=False)
        with open(self.path, "ab") as f:
            f.write(text[: len(text) // 2])


MOMENTS = ["iteration", "checkpoint_write", "metrics_append", "before_summary"]


def interrupt(patch, moment: str, rng: random.Random, checkpoints: int, evaluations: int) -> None:
    from alignlab.core import train
    from alignlab.storage import run

    if moment == "iteration":
        kill_at(patch, train, "check_evaluation", rng.randint(2, evaluations))
    elif moment == "checkpoint_write":

        def half_written(path, state, writer=None):
            buffer = io.BytesIO()
            torch.save(state, buffer)
            half_written_checkpoint(path, buffer.getvalue())

        kill_at(patch, run, "save_checkpoint", rng.randint(1, checkpoints), before=half_written)
    elif moment == "metrics_append":
        kill_at(patch, rundir.MetricsFile, "write", rng.randint(2, checkpoints), before=half_appended_metrics)
    else:
        kill_at(patch, cli, "write_json", 1)


TIERS = {"tier1": (TIER1, 9, 63), "tier2": (TIER2, 4, 4), "tier3": (TIER3, 2, 2)}


@pytest.mark.parametrize("tier", ["tier1", "tier2", pytest.param("tier3", marks=pytest.mark.slow)])
@pytest.mark.parametrize("moment", MOMENTS)
def test_a_killed_run_resumes_to_exactly_the_uninterrupted_numbers(tmp_path, monkeypatch, tier, moment):
    if tier == "tier3":
        pytest.importorskip("transformers")
    monkeypatch.setenv("ALIGNLAB_CACHE", str(tmp_path / "cache"))
    overrides, checkpoints, evaluations = TIERS[tier]
    cli.run_experiment(config(overrides), tmp_path / "whole")
    expected = run_results(tmp_path / "whole")

    rng = random.Random(f"{tier}-{moment}")
    with monkeypatch.context() as patch:
        interrupt(patch, moment, rng, checkpoints, evaluations)
        with pytest.raises(Killed):
            cli.run_experiment(config(overrides), tmp_path / "killed")
    assert not (tmp_path / "killed" / "summary.json").exists()
    cli.run_experiment(config(overrides), tmp_path / "killed")
    assert run_results(tmp_path / "killed") == expected
    assert not list((tmp_path / "killed").glob("*.tmp")) and not list((tmp_path / "killed").glob(".*.tmp"))


def test_resuming_under_another_config_names_the_keys_that_differ(tmp_path):
    run_dir = tmp_path / "run"
    overrides = ["train.iterations=20", "train.checkpoint_every=5", "train.progress=false", "plot=false"]
    cli.run_experiment(config(overrides), run_dir)
    (run_dir / "summary.json").unlink()
    for changed, named in (
        (["train.lr=0.001", "algo.beta=1.0"], "algo.beta: 0.1 -> 1.0"),
        (["algo=kto"], "algo._target_"),
        (["algo=ppo"], "algo._target_"),
        (["train.iterations=30"], "train.iterations: 20 -> 30"),
        (["seed=1"], "seed: 0 -> 1"),
    ):
        cfg = config([*overrides, *changed])
        with pytest.raises(ConfigError, match="belongs to another run configuration") as error:
            cli.run_experiment(cfg, run_dir)
        assert named in str(error.value) and "force=true" in str(error.value)
    # what only changes how the run is shown or saved may differ
    cli.run_experiment(config([*overrides, "train.checkpoint_every=10", "plot=true"]), run_dir)
    assert (run_dir / "summary.json").exists()


def test_a_tier2_checkpoint_is_refused_by_a_bandit_run(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNLAB_CACHE", str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    cli.run_experiment(config(TIER2), run_dir)
    (run_dir / "summary.json").unlink()
    with pytest.raises(ConfigError, match="task._target_"):
        cli.run_experiment(config(["train.iterations=8", "train.checkpoint_every=2", "plot=false"]), run_dir)


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_matches_an_uninterrupted_run(tmp_path):
    args = ["train.iterations=1500", "train.checkpoint_every=25", "train.progress=false", "plot=false"]
    whole = subprocess.run(
        [sys.executable, "-m", "alignlab", *args, "hydra.run.dir=whole"], cwd=tmp_path, capture_output=True
    )
    assert whole.returncode == 0, whole.stderr
    rng = random.Random(0)
    for attempt in range(3):
        run_dir = tmp_path / f"killed{attempt}"
        command = [sys.executable, "-m", "alignlab", *args, f"hydra.run.dir={run_dir.name}"]
        proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not (run_dir / "checkpoint.pt").exists() and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert run_results(run_dir) == run_results(tmp_path / "whole")


# ---- issue 19: one writer per run directory; sources that change; recordings turned on mid-run ---------------
def test_a_second_process_into_a_locked_run_dir_stops_naming_the_holders_pid_and_a_kill_releases_it(tmp_path):
    from tests.test_bad_input import run_main

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from alignlab.storage.lock import RunDirLock; "
            "RunDirLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(600)",
            str(tmp_path / "run"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        code, stderr = run_main([*TIER1[:1], "train.progress=false", "plot=false", "hydra.run.dir=run"], tmp_path)
        lines = stderr.strip().splitlines()
        assert code == 2 and len(lines) == 1 and f"(PID {holder.pid})" in lines[0] and "Fix:" in lines[0], stderr
        assert not (tmp_path / "run" / "metrics.csv").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    code, stderr = run_main(["train.iterations=3", "train.progress=false", "plot=false", "hydra.run.dir=run"], tmp_path)
    assert code == 0, stderr
    assert not (tmp_path / "run" / ".hydra" / "alignlab.lock").exists()


@pytest.mark.slow
def test_a_second_run_into_a_running_ones_directory_is_refused_and_leaves_the_first_ones_config(tmp_path):
    """Hydra writes the second command's config into .hydra/ before alignlab refuses it: the first run puts its
    own back when it ends (here by Ctrl-C, which releases the lock as any exit does)."""
    base = [sys.executable, "-m", "alignlab", "train.iterations=1000000", "train.progress=false", "plot=false"]
    first = subprocess.Popen([*base, "algo=dpo", "hydra.run.dir=run"], cwd=tmp_path, stderr=subprocess.DEVNULL)
    lock = tmp_path / "run" / ".hydra" / "alignlab.lock"
    while not (lock.exists() and lock.read_text().strip()) and first.poll() is None:
        time.sleep(0.01)
    try:
        second = subprocess.run([*base, "algo=ipo", "hydra.run.dir=run"], cwd=tmp_path, capture_output=True, text=True)
        assert second.returncode == 2 and f"(PID {first.pid})" in second.stderr, second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        assert "name: ipo" in (tmp_path / "run" / ".hydra" / "config.yaml").read_text()  # what Hydra did
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=600)
    assert "name: dpo" in (tmp_path / "run" / ".hydra" / "config.yaml").read_text()
    assert not lock.exists()


SOURCES = {
    "init_from": (["save_policy=true"], lambda src: [f"init_from={src}"]),
    "behaviour_from": (["save_policy=true"], lambda src: ["sampling=offline", f"sampling.behaviour_from={src}"]),
    "dataset": (["record_rollouts=true"], lambda src: ["sampling=offline", f"sampling.dataset={src}"]),
}


@pytest.mark.parametrize("kind", SOURCES)
def test_a_resume_refuses_a_source_that_changed_since_the_run_started(tmp_path, monkeypatch, kind):
    from alignlab.core import train
    from tests.test_bad_input import run_main

    writes, reads = SOURCES[kind]
    source = ["train.iterations=12", "train.progress=false", "plot=false", *writes, "hydra.run.dir=src"]
    assert run_main(source, tmp_path)[0] == 0  # through the CLI: the source's .hydra/config.yaml is its config
    child = ["train.iterations=12", "train.checkpoint_every=3", "train.progress=false", "plot=false"]
    child += reads(tmp_path / "src")
    with monkeypatch.context() as patch:
        kill_at(patch, train, "check_evaluation", 8)
        with pytest.raises(Killed):
            cli.run_experiment(config(child), tmp_path / "child")
    sources = json.loads((tmp_path / "child" / "sources.json").read_text())
    key = {"init_from": "init_from", "behaviour_from": "sampling.behaviour_from", "dataset": "sampling.dataset"}[kind]
    assert len(sources[key]["sha256"]) == 64 and len(sources[key]["config_sha256"]) == 64
    assert run_main([*source, "force=true", "train.lr=0.3"], tmp_path)[0] == 0
    with pytest.raises(ConfigError, match=f"{key}=.* changed since this run started") as error:
        cli.run_experiment(config(child), tmp_path / "child")
    assert "force=true" in str(error.value) and "\n" not in str(error.value)


def test_record_rollouts_turned_on_at_a_resume_marks_the_recording_partial_and_a_replay_says_so(
    tmp_path, monkeypatch, capsys
):
    from alignlab.core import train
    from alignlab.errors import DataError
    from alignlab.storage.recording import MANIFEST, ROLLOUTS

    run = ["train.iterations=12", "train.checkpoint_every=4", "train.progress=false", "plot=false"]
    with monkeypatch.context() as patch:
        kill_at(patch, train, "check_evaluation", 7)  # iteration 6: the last checkpoint is round 4
        with pytest.raises(Killed):
            cli.run_experiment(config(run), tmp_path / "run")
    cli.run_experiment(config([*run, "record_rollouts=true"]), tmp_path / "run")
    manifest = json.loads((tmp_path / "run" / ROLLOUTS / MANIFEST).read_text())
    assert manifest["first_round"] == 5 and [r["round"] for r in manifest["rounds"]] == list(range(5, 13))
    replay = ["train.iterations=8", "train.progress=false", "plot=false", "sampling=offline"]
    replay.append(f"sampling.dataset={tmp_path / 'run'}")
    with pytest.raises(DataError, match="is partial: it starts at round 5"):
        cli.run_experiment(config([*replay, "sampling.dataset_order=recorded"]), tmp_path / "replay")
    capsys.readouterr()
    cli.run_experiment(config(replay), tmp_path / "shuffled")
    assert "warning: the recording" in capsys.readouterr().err


def test_a_stray_file_in_a_recording_is_named_when_the_run_resumes(tmp_path, monkeypatch):
    from alignlab.core import train
    from alignlab.errors import DataError
    from alignlab.storage.recording import ROLLOUTS

    run = ["train.iterations=12", "train.checkpoint_every=4", "train.progress=false", "plot=false"]
    run.append("record_rollouts=true")
    with monkeypatch.context() as patch:
        kill_at(patch, train, "check_evaluation", 7)
        with pytest.raises(Killed):
            cli.run_experiment(config(run), tmp_path / "run")
    rounds = tmp_path / "run" / ROLLOUTS
    (rounds / "round-000003.bak.parquet").write_bytes((rounds / "round-000003.parquet").read_bytes())
    with pytest.raises(DataError, match=r"holds round-000003.bak.parquet, which is not a round alignlab wrote"):
        cli.run_experiment(config(run), tmp_path / "run")
    (rounds / "round-000003.bak.parquet").unlink()
    cli.run_experiment(config(run), tmp_path / "run")
    cli.run_experiment(config(run), tmp_path / "whole")
    import pandas as pd

    pd.testing.assert_frame_equal(pd.read_parquet(rounds), pd.read_parquet(tmp_path / "whole" / ROLLOUTS))


@pytest.mark.slow
def test_sigkill_of_a_num_seeds_run_then_resume_matches_an_uninterrupted_run(tmp_path):
    """Issue 18: three seeds in one job, killed while the second trains, resumed. Every seed's files were equal
    already (reproduced on tiers 1-3, killed in each seed, between seeds and before the aggregate); the job's
    aggregate summary.json was not: it held `wall_seconds_std`, the spread of the seeds' times, which differs on
    every run and which a comparison that drops the time (`wall_seconds`) cannot match. It is gone."""
    args = ["num_seeds=3", "train.iterations=300", "train.checkpoint_every=7", "train.progress=false", "plot=false"]
    whole = subprocess.run([sys.executable, "-m", "alignlab", *args, "hydra.run.dir=whole"], cwd=tmp_path)
    assert whole.returncode == 0
    command = [sys.executable, "-m", "alignlab", *args, "hydra.run.dir=killed"]
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (tmp_path / "killed" / "seed=1" / "checkpoint.pt").exists() and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for seed in range(3):
        assert run_results(tmp_path / "killed" / f"seed={seed}") == run_results(tmp_path / "whole" / f"seed={seed}")
    aggregate = [json.loads((tmp_path / d / "summary.json").read_text()) for d in ("whole", "killed")]
    for summary in aggregate:  # what run_results() drops: the one time in it
        summary.pop("wall_seconds")
    assert aggregate[0] == aggregate[1]


def test_metrics_rewritten_under_a_wider_header_after_the_last_checkpoint_are_restored_to_its_rows(tmp_path):
    """A row that brings a new column rewrites metrics.csv whole; the checkpoint that records it is written in the
    background, so a kill in between leaves the older checkpoint beside the wider file (seen in CI: a SIGKILLed
    num_seeds=3 run refused to resume, 'does not hold the rows its checkpoint recorded')."""
    path = tmp_path / "metrics.csv"
    early = [{"iteration": 0, "eval/reward": 0.25}, {"iteration": 1, "loss": 0.693, "eval/reward": 0.5}]
    written = rundir.MetricsFile(path)
    written.write(early)
    checkpointed = written.state()
    before = path.read_bytes()
    written.write([*early, {"iteration": 2, "loss": 0.5, "grad_norm": 1.5}])  # a new column: the file is rewritten
    assert path.read_bytes() != before and b"grad_norm" in path.read_bytes()

    rows = rundir.MetricsFile(path).restore(checkpointed)
    assert rows == early and path.read_bytes() == before
    resumed = rundir.MetricsFile(path)
    resumed.restore(checkpointed)
    resumed.write([*early, {"iteration": 2, "loss": 0.5, "grad_norm": 1.5}])
    assert path.read_bytes() == rundir.metrics_text([*early, {"iteration": 2, "loss": 0.5, "grad_norm": 1.5}])

    altered = path.read_bytes().replace(b"0.693", b"0.694")  # a changed value is still refused
    written.write([*early, {"iteration": 2, "loss": 0.5, "grad_norm": 1.5}, {"iteration": 3, "kl": 0.1}])
    path.write_bytes(altered.replace(b"grad_norm", b"grad_norm,kl", 1))
    with pytest.raises(DataError, match="does not hold the rows its checkpoint recorded"):
        rundir.MetricsFile(path).restore(checkpointed)
