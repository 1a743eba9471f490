"""alignlab from Python (a notebook, a script): the same config and the same code path as the `alignlab` command.

    import alignlab
    metrics = alignlab.run("algo=dpo", "sampling=offline", "task.reward=r1")  # one row per iteration
    metrics.attrs["summary"]["reward"]                                       # the final expected reward
    grid = alignlab.sweep({"sampling": ["online", "offline"]}, "algo=dpo", "num_seeds=3")

`run` composes `conf/` with Hydra's compose API and the given overrides (the CLI's syntax), then calls the CLI's
own `run_experiment` (or `run_seeds` with num_seeds > 1), which writes the usual run directory. Without
`run_dir`, each run goes to a new temporary directory; with one, a finished run there is read back, not re-run
(pass `force=True` to re-run it), as on the command line.
"""

from __future__ import annotations

import itertools
import json
import tempfile
from pathlib import Path

import pandas as pd
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from alignlab.storage.rundir import METRICS, SUMMARY


def compose_config(*overrides: str) -> DictConfig:
    """The composed config of `alignlab OVERRIDES...` (with its `hydra` node, which the run reads)."""
    GlobalHydra.instance().clear()
    with initialize_config_module("alignlab.conf", version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def run(*overrides: str, run_dir: str | Path | None = None, force: bool = False) -> pd.DataFrame:
    """Train one configuration (all its seeds) and return its metrics rows: one per iteration (and seed), the
    columns of metrics.csv plus `seed`. `.attrs` holds `summary` (summary.json) and `run_dir`."""
    from alignlab.runs.cli import run_experiment, run_seeds  # the CLI's own functions: one code path
    from alignlab.storage.lock import RunDirLock

    cfg = compose_config(*overrides, *([] if not force else ["force=true"]))
    run_dir = Path(tempfile.mkdtemp(prefix="alignlab-run-") if run_dir is None else run_dir)
    summary_path = run_dir / SUMMARY
    if not (summary_path.exists() and not cfg.force):
        HydraConfig.instance().set_config(cfg)  # run_seeds reads the job's overrides from it
        with open_dict(cfg):
            job_cfg = cfg.copy()
            del job_cfg["hydra"]
        (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
        OmegaConf.save(job_cfg, run_dir / ".hydra" / "config.yaml")
        OmegaConf.save(OmegaConf.create(list(overrides)), run_dir / ".hydra" / "overrides.yaml")
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        with RunDirLock(run_dir):  # one writer per run directory, as from the command line
            (run_experiment if cfg.num_seeds == 1 else run_seeds)(job_cfg, run_dir)
    return read_run(run_dir)


def read_run(run_dir: str | Path) -> pd.DataFrame:
    """The metrics rows of a run directory (one run, or a num_seeds job's seed=K/ runs) with a `seed` column."""
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / SUMMARY).read_text())
    if (run_dir / METRICS).exists():
        frames = [pd.read_csv(run_dir / METRICS).assign(seed=summary["seed"])]
    else:
        frames = [pd.read_csv(run_dir / f"seed={s}" / METRICS).assign(seed=s) for s in summary["seeds"]]
    metrics = pd.concat(frames, ignore_index=True)
    metrics.attrs.update(summary=summary, run_dir=str(run_dir))
    return metrics


def sweep(grid: dict[str, list], *overrides: str, run_dir: str | Path | None = None) -> pd.DataFrame:
    """`run` for every combination of `grid` ({override key: values}), on top of `overrides`: the metrics rows of
    all runs, with one column per grid key (named as the key, e.g. `sampling`, `algo.beta`). A run directory per
    combination goes under `run_dir` (default: a new temporary directory)."""
    root = Path(tempfile.mkdtemp(prefix="alignlab-sweep-") if run_dir is None else run_dir)
    frames = []
    for values in itertools.product(*grid.values()):
        chosen = [f"{k}={v}" for k, v in zip(grid, values, strict=True)]
        metrics = run(*overrides, *chosen, run_dir=root / (",".join(chosen).replace("/", "_") or "default"))
        frames.append(metrics.assign(**dict(zip(grid, values, strict=True))))
    return pd.concat(frames, ignore_index=True)


def missing_kernel(name: str = "python3") -> str | None:
    """None when Jupyter can start kernel `name`, else one line naming the problem and the fix."""
    fix = "Fix: pip install 'alignlab[notebooks]' (it brings ipykernel), or python -m ipykernel install --user"
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    except ImportError:
        return f"the notebooks need Jupyter (jupyter_client) to run. {fix}."
    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        return f"no Jupyter kernel named '{name}' (the notebooks' kernel). {fix}."
    return None
