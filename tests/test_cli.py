"""The `alignlab` command end to end, in subprocesses, as a user runs it."""

import csv
import json
import os
import stat

import pytest

from tests.conftest import read_summary

FAST = ["train.iterations=30", "train.progress=false"]


def test_default_run_writes_the_run_directory_contract(cli):
    proc = cli("plot=true", *FAST)
    run_dir = cli.dir / "outputs" / "train.iterations=30"
    assert "figure ->" in proc.stdout
    for name in (".hydra/config.yaml", "metrics.csv", "summary.json", "figure.png", "distribution.csv"):
        assert (run_dir / name).exists(), name
    summary = read_summary(run_dir)
    for key in ("reward", "kl_ref", "iterations", "wall_seconds", "p_optimal"):
        assert key in summary
    assert summary["iterations"] == 30 and summary["algo"] == "dpo" and summary["sampling"] == "online"
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 31 and [int(r["iteration"]) for r in rows] == list(range(0, 31))  # 0: the reference
    for column in (
        "eval/reward",
        "eval/kl_ref",
        "eval/entropy",
        "logps/chosen",
        "logps/rejected",
        "logps/margin",
        "pairs/skipped_fraction",
        "time/wall",
        "loss/total",
    ):
        assert column in rows[1], column


def test_a_finished_run_is_skipped_unless_forced(cli):
    args = ["plot=false", *FAST, "hydra.run.dir=run"]
    cli(*args)
    summary = cli.dir / "run" / "summary.json"
    first = summary.read_text()
    proc = cli(*args)
    assert "already done" in proc.stdout and summary.read_text() == first
    proc = cli(*args, "force=true")
    assert "already done" not in proc.stdout
    assert json.loads(summary.read_text())["reward"] == json.loads(first)["reward"], "same seed, same numbers"


def test_python_dash_m_is_the_same_command(cli):
    proc = cli("plot=false", *FAST, "hydra.run.dir=m", "algo=ipo")
    assert "ipo" in proc.stdout and (cli.dir / "m" / "summary.json").exists()


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_a_small_sweep_runs_into_its_directory(cli, launcher):
    cli(
        "-m",
        "algo=dpo,reinforce",
        "sampling=online,offline",
        "seed=0",
        "plot=false",
        *FAST,
        f"hydra/launcher={launcher}",
        "hydra.sweep.dir=sweep",
    )
    runs = sorted(p.parent.name for p in (cli.dir / "sweep").rglob("summary.json"))
    assert len(runs) == 4, runs
    proc = cli("sweep", module="alignlab.plots.plot")
    for name in ("reward_vs_iteration.png", "reward_vs_kl.png", "logps.png", "final.csv"):
        assert (cli.dir / "sweep" / name).exists()
    assert "final.csv" in proc.stdout


def test_many_seeds_in_one_job(cli):
    cli("num_seeds=3", "plot=false", *FAST, "hydra.run.dir=seeds")
    root = cli.dir / "seeds"
    summary = read_summary(root)
    assert summary["seeds"] == [0, 1, 2] and "reward_std" in summary
    per_seed = [read_summary(root / f"seed={s}")["reward"] for s in range(3)]
    assert summary["reward"] == pytest.approx(sum(per_seed) / 3)
    cli("seed=1", "plot=false", *FAST, "hydra.run.dir=single")
    assert read_summary(cli.dir / "single")["reward"] == per_seed[1], "seed K in a group = seed K alone"
    assert "seed=1" in (root / "seed=1" / ".hydra" / "overrides.yaml").read_text()


BAD_INPUT = [
    (["algo=nope"], "unknown algo 'nope'", "dpo"),
    (["algo=dop"], "unknown algo 'dop'", "did you mean algo=dpo?"),
    (["task=nope"], "unknown task 'nope'", "bandit"),
    (["train.nope=1"], "unknown key 'train.nope'", "check the spelling"),
    (["sampling.sync_every=0"], "sync_every=0 is below 1", "offline"),
    (["train.lr=0"], "train.lr=0", "train.lr"),
    (["train.lr=-1"], "must be positive", "train.lr"),
    (["sampling.samples_per_prompt=1"], "needs at least 2 samples per prompt", "sampling.samples_per_prompt=2"),
    (["algo=dpo", "algo.kl_coef=0.1", "algo.kl_in=reward"], "no reward to put the KL anchor in", "algo.kl_in=loss"),
    (["task.reward=r3"], "task.reward=r3", "r1, r2"),
    (["sampling=offline", "sampling.offline_fraction=0.5"], "regime is offline", "sync_every"),
]


@pytest.mark.parametrize("args, problem, fix", BAD_INPUT, ids=[" ".join(a) for a, _, _ in BAD_INPUT])
def test_bad_input_stops_with_one_line_naming_problem_and_fix(cli, args, problem, fix):
    proc = cli(*args, *FAST, "plot=false", "hydra.run.dir=bad", check=False)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert problem in lines[0] and "Fix:" in lines[0] and fix in lines[0].split("Fix:")[1], lines[0]
    assert not (cli.dir / "bad" / "summary.json").exists()


def test_an_unwritable_output_directory_stops_before_anything_is_written(cli):
    locked = cli.dir / "locked"
    locked.mkdir()
    (locked / "keep.txt").write_text("earlier results")
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root without CAP_DAC_OVERRIDE off)")
        proc = cli(*FAST, "hydra.run.dir=locked/run", check=False)
    finally:
        locked.chmod(stat.S_IRWXU)
    assert proc.returncode == 2
    assert "cannot write the output directory" in proc.stderr and "hydra.run.dir=" in proc.stderr
    assert (locked / "keep.txt").read_text() == "earlier results"


def test_an_output_directory_on_a_read_only_filesystem_is_refused(cli):
    proc = cli(*FAST, "hydra.run.dir=/proc/alignlab-cannot-write-here/run", check=False)
    assert proc.returncode == 2, proc.stderr
    assert "cannot write the output directory /proc/alignlab-cannot-write-here/run" in proc.stderr
    assert "Fix: choose a writable one with hydra.run.dir=PATH" in proc.stderr


def test_an_output_directory_below_a_file_is_refused(cli):
    (cli.dir / "a_file").write_text("not a directory")
    proc = cli(*FAST, "hydra.run.dir=a_file/run", check=False)
    assert proc.returncode == 2 and "is a file" in proc.stderr and "Fix:" in proc.stderr
    assert (cli.dir / "a_file").read_text() == "not a directory"


def test_the_configs_are_found_when_installed_from_a_wheel(tmp_path):
    """Build the wheel, install it in a directory of its own, and run from there (not the repository)."""
    import subprocess
    import sys

    from tests.conftest import REPO

    wheels, site = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-w", str(wheels)], check=True)
    wheel = next(wheels.glob("alignlab-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    env = dict(os.environ, PYTHONPATH=str(site))
    where = subprocess.run(
        [sys.executable, "-c", "import importlib.resources as r; print(r.files('alignlab.conf'))"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.strip().startswith(str(site)), where.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "alignlab", "train.iterations=5", "plot=false", "train.progress=false", "algo=rloo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert read_summary(tmp_path / "outputs" / "algo=rloo,train.iterations=5")["algo"] == "rloo"
