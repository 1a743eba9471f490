import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra

REPO = Path(__file__).resolve().parents[1]


def run_cli(args: list[str], cwd: Path, module: str = "alignlab", check: bool = True, timeout: int = 1800):
    """Run the real entry point in a subprocess, as a user would. The timeout only stops a hang: sized for a machine
    ten times slower than an idle one, never a measure of speed."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", HYDRA_FULL_ERROR="0", MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_results(run_dir: Path) -> tuple[list[dict], dict]:
    """metrics.csv without its time columns, and summary.json without its wall time: what a resumed or
    distributed run must reproduce of an uninterrupted one-process run."""
    with open(run_dir / "metrics.csv") as f:
        rows = [{k: v for k, v in row.items() if not k.startswith("time/")} for row in csv.DictReader(f)]
    summary = json.loads((run_dir / "summary.json").read_text())
    summary.pop("wall_seconds")
    return rows, summary


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture
def cli(tmp_path):
    def _run(*args, check=True, module="alignlab"):
        return run_cli(list(args), tmp_path, module=module, check=check)

    _run.dir = tmp_path
    return _run


@pytest.fixture(scope="module")
def hydra_ctx():
    """Hydra initialised on alignlab's packaged configs, for `compose` in a test module."""
    GlobalHydra.instance().clear()
    with initialize_config_module("alignlab.conf", version_base="1.3"):
        yield
    GlobalHydra.instance().clear()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is faster (only synchronisation to gain from more, far worse on a busy
    machine). A module opts in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def launch_worker(script: str, out: Path, processes: int, distributed: str, config: str | None = None) -> dict:
    """Run a test file's worker (`python script OUT DISTRIBUTED`, which writes OUT/DISTRIBUTED.json) on
    `processes` processes: one plain process, torchrun, or `accelerate launch` with an accelerate `config` file of
    full_scale/accelerate/ (then task.distributed is `auto` and the config picks the engine)."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(root), OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    runner = [sys.executable]
    if config is not None:
        config_file = str(root / "full_scale" / "accelerate" / config)
        runner += ["-m", "accelerate.commands.launch", "--config_file", config_file, "--num_processes", str(processes)]
    elif processes > 1:
        runner += ["-m", "torch.distributed.run", f"--nproc_per_node={processes}", "--standalone"]
    result = subprocess.run(
        [*runner, script, str(out), distributed],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=1800,  # a hang guard only
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / f"{distributed}.json").read_text())
