"""The `alignlab` command (also `python -m alignlab`): compose the config with Hydra, run, write outputs.

A run directory holds `.hydra/` (the resolved config), `metrics.csv`, `summary.json` and, when
`plot=true`, `figure.png`. A run whose `summary.json` exists is skipped unless `force=true`, so a crashed
sweep can simply be launched again.
"""

from __future__ import annotations

import difflib
import importlib.resources
import json
import sys
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from alignlab.errors import AlignlabError
from alignlab.loggers import RunRecorder, start_loggers
from alignlab.rundir import CHECKPOINT, METRICS, SUMMARY, check_writable, write_json, write_metrics
from alignlab.sampling import SamplingConfig
from alignlab.train import TrainConfig, check_run, train
from alignlab.tuning import apply_tuned

GROUPS = ("task", "algo", "sampling", "experiment", "logger", "tuned")

OmegaConf.register_new_resolver(
    "alignlab_run_name", lambda overrides: overrides.replace("/", "_") or "default", replace=True
)


def fail(message: str) -> None:
    """Stop with one line on stderr and exit status 2."""
    print(f"alignlab: error: {message}", file=sys.stderr)
    sys.exit(2)


def group_options(group: str) -> list[str]:
    folder = importlib.resources.files("alignlab.conf") / group
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


class OutputDirCheck(Callback):
    """Refuse an output directory that cannot be written before Hydra creates anything in it."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir")

    @staticmethod
    def _check(directory: str, key: str) -> None:
        reason = check_writable(Path(directory))
        if reason is not None:
            fail(
                f"cannot write the output directory {directory} ({reason}). Fix: choose a writable one with {key}=PATH."
            )


def _overrides(argv: list[str]) -> list[str]:
    """The key=value overrides of a command line, without Hydra's own flags."""
    takes_value = {
        "--cfg",
        "-c",
        "--package",
        "-p",
        "--config-path",
        "-cp",
        "--config-name",
        "-cn",
        "--config-dir",
        "-cd",
        "--info",
        "-i",
    }
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg.startswith("-"):
            skip = arg in takes_value and arg not in ("--info", "-i")
        else:
            out.append(arg)
    return out


def _check_option(group: str, value) -> None:
    options = group_options(group)
    if value is not None and str(value) not in options:
        close = difflib.get_close_matches(str(value), options, n=1)
        hint = f"did you mean {group}={close[0]}? " if close else ""
        fail(f"unknown {group} '{value}'. Fix: {hint}choose one of {', '.join(options) or '(none yet)'}.")


def precheck(argv: list[str]) -> None:
    """Name an unknown option or key in one line, with the fix, before Hydra composes anything."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if any(a.startswith(("hydra.searchpath", "--config-dir", "-cd")) for a in argv):
        return  # options may come from another config directory: Hydra checks them
    try:
        overrides = OverridesParser.create().parse_overrides(_overrides(argv))
    except Exception:
        return  # Hydra reports syntax errors itself
    selections = []
    for o in overrides:
        if o.is_hydra_override() or o.is_add() or o.is_delete():
            continue
        key = o.key_or_group
        if key in GROUPS:
            values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.value()]
            if o.is_sweep_override() and not o.is_discrete_sweep():
                continue
            if isinstance(values[0], list):  # several options at once: logger=[csv,tensorboard]
                for value in values[0]:
                    _check_option(key, value)
                selections.append(f"{key}=[{','.join(map(str, values[0]))}]")
                continue
            for value in values:
                _check_option(key, value)
            selections.append(f"{key}={values[0]}")
    dotted = [
        o
        for o in overrides
        if not (o.is_hydra_override() or o.is_add() or o.is_delete()) and o.key_or_group not in GROUPS
    ]
    if not dotted:
        return
    from hydra import compose, initialize_config_module

    with initialize_config_module("alignlab.conf", version_base="1.3"):
        cfg = compose("config", overrides=selections)
    missing = object()
    for o in dotted:
        key = o.key_or_group
        if OmegaConf.select(cfg, key, default=missing, throw_on_missing=False) is missing:
            parent = key.rsplit(".", 1)[0] if "." in key else ""
            node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
            known = ", ".join(node.keys()) if isinstance(node, DictConfig) else ""
            where = f" ({parent or 'the top level'} has: {known})" if known else ""
            fail(f"unknown key '{key}'{where}. Fix: check the spelling, or add a new key with +{key}=VALUE.")


def build(node: dict):
    """hydra.utils.instantiate, letting our own errors through unwrapped (one line, with the fix)."""
    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, AlignlabError):
            raise cause from None
        raise


def run_experiment(cfg: DictConfig, run_dir: Path) -> dict:
    """Build the task, objective and regime from the config, train, and write the run directory."""
    cfg = apply_tuned(cfg)
    task_cfg = OmegaConf.to_container(cfg.task, resolve=True)
    algo_cfg = OmegaConf.to_container(cfg.algo, resolve=True)
    algo_cfg.pop("name", None)
    sampling = SamplingConfig(**OmegaConf.to_container(cfg.sampling, resolve=True))
    train_cfg = TrainConfig(**OmegaConf.to_container(cfg.train, resolve=True))
    objective = build(algo_cfg)
    check_run(objective, sampling, train_cfg)  # before the task is built: that may load a model
    loggers = start_loggers(cfg, run_dir)
    task = build(task_cfg)
    if cfg.force:  # a forced re-run starts afresh instead of resuming an old checkpoint
        (run_dir / CHECKPOINT).unlink(missing_ok=True)

    recorder = RunRecorder(loggers, run_dir if cfg.get("record_distribution", True) else None, task)
    try:
        evaluation, rows, policy = train(
            task, objective, sampling, train_cfg, seed=cfg.seed, run_dir=run_dir, on_row=recorder
        )
    finally:
        recorder.close()
    write_metrics(run_dir / METRICS, rows)
    if hasattr(task, "artifacts"):
        task.artifacts(policy, run_dir)
    summary = dict(evaluation)
    summary.update(
        iterations=train_cfg.iterations,
        seed=cfg.seed,
        task=cfg.task.name,
        algo=cfg.algo.name,
        sampling=cfg.sampling.name,
    )
    write_json(run_dir / SUMMARY, summary)
    return summary


def run_seeds(cfg: DictConfig, run_dir: Path) -> dict:
    """`num_seeds` runs of one configuration in one job: seed=K/ subdirectories (each a full run directory
    with its own .hydra/ record) and an aggregate summary.json with the mean and s.d. across seeds."""
    summaries = []
    overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith(("seed=", "num_seeds="))]
    for seed in range(cfg.seed, cfg.seed + cfg.num_seeds):
        seed_dir = run_dir / f"seed={seed}"
        done = seed_dir / SUMMARY
        if done.exists() and not cfg.force:
            summaries.append(json.loads(done.read_text()))
            continue
        seed_cfg = cfg.copy()
        seed_cfg.seed = seed
        seed_cfg.num_seeds = 1
        (seed_dir / ".hydra").mkdir(parents=True, exist_ok=True)
        OmegaConf.save(seed_cfg, seed_dir / ".hydra" / "config.yaml")
        OmegaConf.save(OmegaConf.create(overrides + [f"seed={seed}"]), seed_dir / ".hydra" / "overrides.yaml")
        summaries.append(run_experiment(seed_cfg, seed_dir))
    aggregate = {"seeds": [s["seed"] for s in summaries], "num_seeds": len(summaries)}
    for key, value in summaries[0].items():
        if isinstance(value, (int, float)) and key != "seed":
            values = torch.tensor([float(s[key]) for s in summaries], dtype=torch.float64)
            aggregate[key] = float(values.mean())
            aggregate[f"{key}_std"] = float(values.std()) if len(values) > 1 else 0.0
        elif key in ("task", "algo", "sampling"):
            aggregate[key] = value
    write_json(run_dir / SUMMARY, aggregate)
    return aggregate


@hydra.main(version_base="1.3", config_path="pkg://alignlab.conf", config_name="config")
def run(cfg: DictConfig) -> dict | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    summary_path = run_dir / SUMMARY
    if summary_path.exists() and not cfg.force:
        print(f"alignlab: {run_dir} is already done ({SUMMARY} exists): skipped. Use force=true to run it again.")
        return json.loads(summary_path.read_text())
    if cfg.num_seeds < 1:
        fail(f"num_seeds={cfg.num_seeds} is below 1. Fix: set num_seeds=1 or more.")
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        summary = run_experiment(cfg, run_dir) if cfg.num_seeds == 1 else run_seeds(cfg, run_dir)
    except AlignlabError as error:
        fail(str(error))
    line = ", ".join(f"{k}={summary[k]:.4g}" for k in ("reward", "kl_ref") if k in summary)
    seeds = f"seed={cfg.seed}" if cfg.num_seeds == 1 else f"seeds {cfg.seed}..{cfg.seed + cfg.num_seeds - 1} (mean)"
    print(
        f"alignlab: {cfg.task.name} / {cfg.algo.name} / {cfg.sampling.name} {seeds}: {line} "
        f"({summary['wall_seconds']:.2f} s) -> {summary_path}"
    )
    if cfg.plot:
        from alignlab.plot import plot_run, plot_sweep

        figures = [plot_run(run_dir)] if cfg.num_seeds == 1 else [p for p in plot_sweep(run_dir) if p.suffix == ".png"]
        for figure in figures:
            print(f"alignlab: figure -> {figure}")
    return summary


def main() -> None:
    precheck(sys.argv[1:])
    run()


if __name__ == "__main__":
    main()
