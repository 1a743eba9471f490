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


@pytest.mark.parametrize("launcher", ["basic", "joblib", "submitit_local"])
def test_a_small_sweep_runs_into_its_directory(cli, launcher):
    if launcher == "submitit_local":
        pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
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


# ---- Hydra's own command line: every flag works (the checks run in Hydra's task function and callbacks) -------
@pytest.mark.parametrize(
    "flags, shown",
    [
        (["--cfg", "job", "algo=ipo"], "name: ipo"),
        (["--cfg", "hydra"], "run_checks:"),
        (["--info"], "Defaults List"),
        (["--info", "defaults"], "alignlab_schema/task/bandit"),
        (["--info", "defaults-tree"], "alignlab_schema/task/bandit"),
        (["--info", "config"], "experiment_name: sweep"),
        (["--info", "searchpath"], "pkg://alignlab.conf"),
        (["--info", "plugins"], "BasicLauncher"),
        (["--shell-completion", "install=bash"], "-F hydra_bash_completion"),
        (["--hydra-help"], "Hydra (1."),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_every_hydra_flag_works_and_writes_nothing(cli, flags, shown):
    proc = cli(*flags)
    assert shown in proc.stdout, proc.stdout[-2000:]
    assert not list(cli.dir.iterdir()), "a flag that only shows something wrote files"


def test_help_shows_the_users_groups_and_commands_without_hydras_banner(cli):
    proc = cli("--help")
    lines = proc.stdout.splitlines()
    assert len(lines) <= 40, proc.stdout
    groups = {line.split()[0]: line for line in lines if line.startswith("  ") and len(line.split()) > 1}
    for group in ("task", "algo", "sampling", "experiment", "data", "mix", "logger", "tuned", "hydra/launcher"):
        assert group in groups, group
    assert "dpo" in groups["algo"] and "synthetic_llm" in groups["task"] and "online_vs_offline" in groups["experiment"]
    for command in ("alignlab-plot", "alignlab-report", "alignlab-data", "alignlab-tune", "make setup-lm", "-m"):
        assert command in proc.stdout, command
    for hydras in ("alignlab_schema", "Powered by Hydra", "== Config ==", "is powered by Hydra"):
        assert hydras not in proc.stdout, hydras


def test_experimental_rerun_runs_the_pickled_config_again(cli):
    """Hydra's --experimental-rerun reads .hydra/config.pickle (written by Hydra's PickleJobInfoCallback) and calls
    the task function with it, with no callback: the run's own checks are in the task function."""
    pickle_job = "+hydra.callbacks.save_job_info._target_=hydra.experimental.callbacks.PickleJobInfoCallback"
    cli("plot=false", *FAST, "algo=ipo", "hydra.run.dir=run", pickle_job)
    summary = cli.dir / "run" / "summary.json"
    first = json.loads(summary.read_text())
    summary.unlink()
    cli("--experimental-rerun", str(cli.dir / "run" / ".hydra" / "config.pickle"))
    again = json.loads(summary.read_text())
    assert again["algo"] == "ipo" and again["reward"] == first["reward"]


def test_a_sweep_of_data_sources_runs_and_a_single_data_option_too(cli):
    """The README's `alignlab -m data=online,shuffled_online,reference`: each job reads its data=online sibling."""
    cli("-m", "data=online,shuffled_online,reference", "plot=false", *FAST, "hydra.sweep.dir=sweep")
    runs = {p.parent.name.split(",")[0]: read_summary(p.parent) for p in (cli.dir / "sweep").rglob("summary.json")}
    assert set(runs) == {"data=online", "data=shuffled_online", "data=reference"}
    assert runs["data=online"]["sampling"] == "online" and runs["data=shuffled_online"]["sampling"] == "offline"
    cli("data=online", "plot=false", *FAST, "hydra.run.dir=single")
    assert (cli.dir / "single" / "rollouts.parquet").exists()


def test_a_sweep_budget_that_does_not_divide_is_refused_before_any_job_runs(cli):
    proc = cli("-m", "experiment=batch_size", "findings.prompt_budget=100", "findings.seeds=1", check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "findings.prompt_budget=100 is not a multiple of sampling.prompts_per_round=8" in lines[0]
    assert "Fix:" in lines[0] and not list(cli.dir.iterdir())


def test_a_refused_sweep_writes_nothing_and_says_which_job(cli):
    proc = cli("-m", "sampling.prompts_per_round=8", "sampling.minibatch_prompts=2,3", *FAST, check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("alignlab: error: sweep job sampling.prompts_per_round=8,sampling.minibatch_prompts=3")
    assert "Fix:" in lines[0]
    assert not list(cli.dir.iterdir())


COUNT_CHECKS = """
import atexit, sys
from alignlab.runs import cli
from alignlab.core import train
from alignlab.storage import recording, run
counts = {"cli check_run": 0, "train check_run": 0, "check_recordable": 0}
def counted(name, function):
    def wrapper(*args, **kwargs):
        counts[name] += 1
        return function(*args, **kwargs)
    return wrapper
cli.check_run = counted("cli check_run", cli.check_run)
train.check_run = counted("train check_run", train.check_run)
run.check_recordable = counted("check_recordable", recording.check_recordable)  # RunStorage checks it
atexit.register(lambda: print("checks:", counts))
sys.argv = ["alignlab", *sys.argv[1:]]
cli.main()
"""


def test_a_run_checks_its_settings_once(cli):
    """The CLI checks the run once, before the task is built (the removed precheck checked it again, and Hydra's
    run-mode lookup composed it a third time); train() keeps its own check for its direct callers."""
    import subprocess
    import sys

    args = ["plot=false", *FAST, "record_rollouts=true", "hydra.run.dir=run"]
    proc = subprocess.run(
        [sys.executable, "-c", COUNT_CHECKS, *args], cwd=cli.dir, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == (
        "checks: {'cli check_run': 1, 'train check_run': 1, 'check_recordable': 1}"
    )


def test_a_finished_run_launched_with_other_settings_is_refused_naming_them(cli):
    cli("plot=false", *FAST, "hydra.run.dir=mine")
    summary, config = cli.dir / "mine" / "summary.json", cli.dir / "mine" / ".hydra" / "config.yaml"
    before = summary.read_text(), config.read_text()
    proc = cli("plot=false", *FAST, "hydra.run.dir=mine", "algo=ipo", check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "holds a finished run with other settings (algo.name, algo._target_" in lines[0]
    assert "force=true" in lines[0].split("Fix:")[1]
    assert (summary.read_text(), config.read_text()) == before, "a refused re-launch changed the run directory"
    proc = cli("plot=true", *FAST, "hydra.run.dir=mine", "train.progress=true")  # shown otherwise, same run
    assert "already done" in proc.stdout and summary.read_text() == before[0]


def test_ctrl_c_prints_one_line_that_says_where_to_resume(cli):
    import signal
    import subprocess
    import sys
    import time

    from alignlab.storage.rundir import CHECKPOINT

    args = ["plot=false", "train.progress=false", "train.iterations=1000000", "train.checkpoint_every=20"]
    env = dict(os.environ, HYDRA_FULL_ERROR="0")
    child = subprocess.Popen(
        [sys.executable, "-m", "alignlab", *args, "hydra.run.dir=long"],
        cwd=cli.dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 600  # a hang guard, for a machine 10x slower than idle
    while not (cli.dir / "long" / CHECKPOINT).exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=600)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert child.returncode == 130 and len(lines) == 1, stderr
    assert lines[0] == (
        f"alignlab: interrupted. Fix: run the same command again: it resumes from the checkpoint in {cli.dir / 'long'}."
    )


LM_EXTRAS_MISSING = """
import sys
sys.modules["transformers"] = None  # what an install without the lm extra (make demo) has: no transformers
from alignlab.runs.cli import main
sys.argv = ["alignlab", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("task", ["synthetic_llm", "full_scale"])
def test_a_tier_without_the_lm_extras_says_how_to_install_them_and_writes_nothing(cli, task):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", LM_EXTRAS_MISSING, f"task={task}", *FAST, "plot=false"],
        cwd=cli.dir,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert f"task={task} needs the language-model extras (transformers is not installed)" in lines[0]
    assert "Fix: run `make setup-lm` (or pip install -e '.[lm]')" in lines[0]
    assert not list(cli.dir.iterdir())
