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


# ---- issue 17/19: files any PyTorch user opens; older formats; a full disk ------------------------------------
def test_every_checkpoint_and_policy_opens_with_weights_only_and_its_checksum_file_vouches_for_it(tmp_path):
    import hashlib

    code, stderr = run_main([*RUN, "save_policy=true"], tmp_path)
    assert code == 0, stderr
    for name in ("checkpoint.pt", "policy.pt"):
        path = tmp_path / "run" / name
        state = torch.load(path, weights_only=True)
        assert "policy" in state
        first = (tmp_path / "run" / f"{name}.sha256").read_text().splitlines()[0]
        assert first == f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {name}"  # `sha256sum -c` format
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["iteration"] == 20


def test_a_checkpoint_in_the_older_header_format_still_resumes_to_the_same_numbers(finished, tmp_path):
    from alignlab.storage.rundir import CHECKPOINT_MAGIC, checksum_path

    expected = json.loads((finished / "run" / "summary.json").read_text())
    work = copy_of(finished, tmp_path)
    (work / "run" / "summary.json").unlink()
    path = work / "run" / "checkpoint.pt"
    payload = path.read_bytes()
    import hashlib

    path.write_bytes(CHECKPOINT_MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
    checksum_path(path).unlink()
    code, stderr = run_main(RUN, work)
    assert code == 0, stderr
    summary = json.loads((work / "run" / "summary.json").read_text())
    assert summary["reward"] == expected["reward"] and summary["kl_ref"] == expected["kl_ref"]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.pop("eval_generator"), "was written by an older alignlab: it lacks eval_generator"),
        (lambda s: s.pop("config_hash"), "an older alignlab that recorded no run configuration"),
        (lambda s: s.update(config_hash=""), "an older alignlab that recorded no run configuration"),
    ],
    ids=["missing_key", "no_config_hash", "empty_config_hash"],
)
def test_a_checkpoint_of_an_older_alignlab_is_one_line_with_the_fix(finished, tmp_path, change, message):
    from alignlab.storage.rundir import checkpoint_bytes, write_with_checksum

    work = copy_of(finished, tmp_path)
    (work / "run" / "summary.json").unlink()
    path = work / "run" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    change(state)
    write_with_checksum(path, checkpoint_bytes(state))
    code, stderr = run_main(RUN, work)
    line = one_line(stderr)
    assert code == 2 and message in line and "force=true" in line, line


def test_a_full_disk_is_one_line_and_the_rerun_resumes_to_the_same_numbers(finished, tmp_path, monkeypatch):
    """ENOSPC from the fifth atomic write on (metrics.csv, then two per checkpoint: the second checkpoint's file,
    written in the background and raised at the next one)."""
    import errno

    from alignlab.storage import rundir

    expected = json.loads((finished / "run" / "summary.json").read_text())
    real_fdopen, calls = os.fdopen, {"writes": 0}

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    def fdopen(fd, mode="r", *args, **kwargs):
        f = real_fdopen(fd, mode, *args, **kwargs)
        calls["writes"] += 1
        return FullDisk(f) if calls["writes"] >= 5 else f

    with monkeypatch.context() as patch:
        patch.setattr(rundir.os, "fdopen", fdopen)
        code, stderr = run_main(RUN, tmp_path)
    line = one_line(stderr)
    assert code == 2 and "the disk is full" in line and "re-run the same command" in line, line
    assert not list((tmp_path / "run").glob(".*.tmp"))
    code, stderr = run_main(RUN, tmp_path)
    assert code == 0, stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["reward"] == expected["reward"] and summary["kl_ref"] == expected["kl_ref"]
