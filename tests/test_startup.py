"""What a bandit run's start-up costs: it never imports torch._dynamo (about 0.9 s, which torch.optim's
optimizers import in torch 2.13: alignlab/core/optim.py) and composes the config twice, both Hydra's own (once
to read hydra.mode, once for the run): its settings are checked in the task function, from the composed config,
with no composition of their own. benchmarks/bench_startup.py measures the time."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import atexit, sys
import hydra._internal.hydra as hydra_internal
compose_config = hydra_internal.Hydra.compose_config
calls = []
def counted(self, *args, **kwargs):
    calls.append(kwargs.get("run_mode"))
    return compose_config(self, *args, **kwargs)
hydra_internal.Hydra.compose_config = counted
atexit.register(lambda: print("dynamo:", "torch._dynamo" in sys.modules, "compositions:", len(calls)))
from alignlab.runs import cli
sys.argv = ["alignlab", *sys.argv[1:]]
cli.main()
"""


def probe(tmp_path, *args: str) -> str:
    env = dict(os.environ, HYDRA_FULL_ERROR="0")
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "args, compositions",
    [
        (["task=bandit", "plot=false", "train.iterations=5", "train.checkpoint_every=2", "hydra.run.dir=run"], 2),
        (["plot=false", "train.iterations=5", "seed=3", "hydra.run.dir=run"], 2),
        (["plot=false", "train.iterations=5", "hydra.mode=RUN", "hydra.run.dir=run"], 2),
    ],
)
def test_a_bandit_run_never_imports_torch_dynamo_and_composes_its_config_twice(tmp_path, args, compositions):
    assert probe(tmp_path, *args) == f"dynamo: False compositions: {compositions}"
    assert (tmp_path / "run" / "summary.json").exists()


def test_a_sweep_still_runs_every_job(tmp_path):
    """A sweep is not one configuration: Hydra reads its mode as before, and `-m` runs every job."""
    last = probe(tmp_path, "-m", "plot=false", "train.iterations=3", "seed=0,1", "hydra.sweep.dir=sweep")
    assert last.startswith("dynamo: False")
    assert len(list((tmp_path / "sweep").glob("*/summary.json"))) == 2
