"""Damaged run files are detected and named: a checkpoint by its checksum, a summary.json or metrics.csv that
does not hold a finished run, a directory where a file goes. Files follow the user's umask; a NaN in an
evaluation stops the run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from alignlab.errors import NumericalError
from alignlab.storage.rundir import TMP_SUFFIX
from tests.test_bad_input import run_main

RUN = ["train.iterations=20", "train.checkpoint_every=5", "train.progress=false", "plot=false", "hydra.run.dir=run"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """One finished run with checkpoints, copied by each test that damages it."""
    work = tmp_path_factory.mktemp("finished")
    code, stderr = run_main(RUN, work)
    assert code == 0, stderr
    return work


def copy_of(finished: Path, tmp_path: Path) -> Path:
    import shutil

    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    return tmp_path


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) * 2 // 3] ^= 0x10
    path.write_bytes(bytes(data))


CHECKPOINT_DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "empty": lambda p: p.write_bytes(b""),
    "garbage": lambda p: p.write_bytes(os.urandom(4096)),
    "bit_flipped": flip_a_bit,
    "a_plain_torch_file": lambda p: torch.save({"policy": {}}, p),
}


@pytest.mark.parametrize("damage", CHECKPOINT_DAMAGE)
def test_a_damaged_checkpoint_is_named_not_loaded(finished, tmp_path, damage):
    work = copy_of(finished, tmp_path)
    (work / "run" / "summary.json").unlink()
    CHECKPOINT_DAMAGE[damage](work / "run" / "checkpoint.pt")
    code, stderr = run_main(RUN, work)
    line = one_line(stderr)
    assert code == 2 and "checkpoint.pt" in line and "damaged" in line and "Fix:" in line, line


SUMMARY_DAMAGE = {
    "truncated": lambda p: p.write_text(p.read_text()[:20]),
    "empty": lambda p: p.write_text(""),
    "binary": lambda p: p.write_bytes(b"\xff\xfe\x00garbage"),
    "a_list": lambda p: p.write_text("[1, 2]"),
    "an_empty_object": lambda p: p.write_text("{}"),
}


@pytest.mark.parametrize("damage", SUMMARY_DAMAGE)
def test_a_damaged_summary_is_not_taken_for_a_finished_run(finished, tmp_path, damage):
    work = copy_of(finished, tmp_path)
    expected = json.loads((work / "run" / "summary.json").read_text())
    SUMMARY_DAMAGE[damage](work / "run" / "summary.json")
    code, stderr = run_main(RUN, work)
    assert code == 0, stderr
    summary = json.loads((work / "run" / "summary.json").read_text())
    assert summary["reward"] == expected["reward"], "re-run from its last checkpoint: the same numbers"


def test_a_finished_run_with_truncated_metrics_is_not_taken_for_done(finished, tmp_path):
    work = copy_of(finished, tmp_path)
    metrics = work / "run" / "metrics.csv"
    metrics.write_bytes(metrics.read_bytes()[: metrics.stat().st_size // 2])
    code, stderr = run_main(RUN, work)
    line = one_line(stderr)
    assert code == 2 and "metrics.csv" in line and "force=true" in line, line
    code, stderr = run_main([*RUN, "force=true"], work)
    assert code == 0, stderr
    assert len(metrics.read_text().splitlines()) == 22  # the header, iteration 0 (the reference), 20 rows


@pytest.mark.parametrize("name", ["metrics.csv", "checkpoint.pt", "summary.json"])
def test_a_directory_where_a_file_goes_is_named_before_training(tmp_path, name):
    (tmp_path / "run" / name).mkdir(parents=True)
    code, stderr = run_main(RUN, tmp_path)
    line = one_line(stderr)
    assert code == 2 and f"run/{name} is a directory" in line and "Fix:" in line, line
    assert not (tmp_path / "run" / ".hydra").exists() or not (tmp_path / "run" / "summary.json").is_file()


def test_leftover_temporaries_are_removed_when_the_run_resumes(finished, tmp_path):
    work = copy_of(finished, tmp_path)
    (work / "run" / "summary.json").unlink()
    stale = work / "run" / f".checkpoint.pt.abc123{TMP_SUFFIX}"
    stale.write_bytes(b"half a checkpoint")
    code, stderr = run_main(RUN, work)
    assert code == 0, stderr
    assert not stale.exists()


def test_files_follow_the_users_umask(tmp_path):
    old = os.umask(0o022)
    try:
        code, stderr = run_main(RUN, tmp_path)
    finally:
        os.umask(old)
    assert code == 0, stderr
    for name in ("metrics.csv", "summary.json", "checkpoint.pt"):
        mode = (tmp_path / "run" / name).stat().st_mode & 0o777
        assert mode == 0o644, (name, oct(mode))


def test_a_nan_in_an_evaluation_stops_the_run(monkeypatch):
    from alignlab.core.objectives import DPO
    from alignlab.core.sampling import SamplingConfig
    from alignlab.core.train import TrainConfig, train
    from bandits import BanditTask

    task = BanditTask()
    evaluate = task.evaluate
    monkeypatch.setattr(task, "evaluate", lambda policy, g: evaluate(policy, g) | {"kl_ref": float("nan")})
    with pytest.raises(NumericalError, match="eval/kl_ref=nan"):
        train(task, DPO(), SamplingConfig(), TrainConfig(iterations=3, progress=False))
