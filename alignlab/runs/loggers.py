"""Experiment tracking: send each metrics row to TensorBoard or Weights & Biases as well as to metrics.csv.

`logger=csv` (the default), `logger=tensorboard`, `logger=wandb`, or several: `logger=[csv,tensorboard]`.
metrics.csv is always written; the others receive the same rows under the same namespaced names
(`eval/reward`, `logps/chosen`, ...) at step = `iteration`, and the resolved config as hyper-parameters.
The packages are an extra: `pip install 'alignlab[track]'`.

The run's recorder is also where the policy's distribution over completions is written at each evaluation
(distributions.csv, for `alignlab-plot --animate`), for tasks that define `distribution(policy)`.
"""

from __future__ import annotations

import csv
import io
import os
import socket
import warnings
from pathlib import Path
from typing import Protocol

from alignlab.errors import ConfigError
from alignlab.storage.rundir import DISTRIBUTIONS, atomic_write_bytes, is_main_process

TRACK_EXTRA = "pip install 'alignlab[track]'"
LOGGERS = ("csv", "tensorboard", "wandb")


class MetricsLogger(Protocol):
    def log_hparams(self, config: dict) -> None: ...

    def log_row(self, row: dict) -> None: ...

    def close(self) -> None: ...


def flatten(config: dict, prefix: str = "") -> dict:
    """{'algo': {'beta': 0.1}} -> {'algo.beta': 0.1}; values that are not numbers, strings or bools become text."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = str(value)
    return out


def scalars(row: dict) -> dict[str, float]:
    """The numeric metrics of a row, without `iteration` (it is the step)."""
    return {k: float(v) for k, v in row.items() if k != "iteration" and isinstance(v, (int, float))}


def _require(module: str, logger: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise ConfigError(f"logger={logger} needs the {module.split('.')[0]} package", TRACK_EXTRA) from None


class CSVLogger:
    """metrics.csv is written by the run itself (atomically, at checkpoints and at the end): nothing to do."""

    def log_hparams(self, config: dict) -> None:
        pass

    def log_row(self, row: dict) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardLogger:
    """Event files in RUN_DIR/tensorboard/ (`tensorboard --logdir outputs`): one scalar per metric, the config
    as hyper-parameters (the HPARAMS tab) and as text."""

    def __init__(self, run_dir: Path, subdir: str = "tensorboard"):
        _require("tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / subdir))

    def log_hparams(self, config: dict) -> None:
        from torch.utils.tensorboard.summary import hparams

        flat = flatten(config)
        for summary in hparams(flat, {"eval/reward": 0.0}):  # the metric is a placeholder: rows log the real one
            self.writer.file_writer.add_summary(summary)
        self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in flat.items()))

    def log_row(self, row: dict) -> None:
        step = int(row["iteration"])
        for key, value in scalars(row).items():
            self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        self.writer.close()


def reachable(host: str, port: int = 443, timeout: float = 2.0) -> bool:
    """Whether a TCP connection to host:port opens within `timeout` seconds (no data is sent)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class WandbLogger:
    """A Weights & Biases run in RUN_DIR/wandb/. Offline by default (`wandb sync RUN_DIR/wandb/offline-run-*` uploads
    it later), and then it contacts nothing: WANDB_MODE is set before wandb is imported, since wandb.init(mode=...)
    alone still resolves its server's name. It goes online only when asked: logger.wandb.mode=online, or the user's
    own WANDB_MODE=online with the mode left null; asked to where the server cannot be reached, it warns and stays
    offline instead of hanging."""

    def __init__(
        self,
        run_dir: Path,
        config: dict,
        name: str,
        group: str | None,
        project: str = "alignlab",
        entity: str | None = None,
        mode: str | None = None,
        host: str = "api.wandb.ai",
    ):
        if mode is None:  # the user's own W&B setting, else offline
            mode = os.environ.get("WANDB_MODE") or "offline"
        if mode not in ("offline", "online", "disabled"):
            raise ConfigError(
                f"logger.wandb.mode={mode} is not a W&B mode (from WANDB_MODE when the key is null)",
                "use offline, online or disabled",
            )
        if mode != "online":  # read by wandb's import and its threads: offline, W&B resolves no server name at all
            os.environ["WANDB_MODE"] = mode
        wandb = _require("wandb", "wandb")
        if mode == "online" and not reachable(host):
            warnings.warn(
                f"W&B: {host} cannot be reached, so this run is logged offline in {run_dir}/wandb. "
                "Fix: upload it later with `wandb sync`, or set logger.wandb.mode=offline to silence this.",
                stacklevel=2,
            )
            mode = "offline"
        os.environ.setdefault("WANDB_SILENT", "true")
        self.run = wandb.init(
            dir=str(run_dir),
            project=project,
            entity=entity,
            group=group,
            name=name,
            job_type="train",
            mode=mode,
            config=config,
            reinit="create_new",
            settings=wandb.Settings(init_timeout=60, console="off", x_disable_stats=True),
        )

    def log_hparams(self, config: dict) -> None:
        pass  # given to wandb.init as the run's config

    def log_row(self, row: dict) -> None:
        self.run.log(scalars(row), step=int(row["iteration"]))

    def close(self) -> None:
        self.run.finish()


def job_names(run_dir: Path, experiment_name: str) -> tuple[str, str | None]:
    """W&B's run name and group from the Hydra job: the run directory's name (with its seed=K/ parent job), and,
    in a multirun, the sweep's name, so that every run of a sweep is in one group."""
    run_dir = Path(run_dir)
    name = f"{run_dir.parent.name}/{run_dir.name}" if run_dir.name.startswith("seed=") else run_dir.name
    group = None
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            group = experiment_name
    except (ImportError, ValueError):
        pass
    return name, group


def make_loggers(logger_cfg: dict | None, run_dir: Path, config: dict, experiment_name: str) -> list[MetricsLogger]:
    """The loggers named in `logger_cfg` ({name: settings}), with the resolved `config` logged as hyper-parameters."""
    loggers: list[MetricsLogger] = []
    for kind, settings in (logger_cfg or {}).items():
        settings = dict(settings or {})
        if kind == "csv":
            logger = CSVLogger()
        elif kind == "tensorboard":
            logger = TensorBoardLogger(run_dir, **settings)
        elif kind == "wandb":
            name, group = job_names(run_dir, experiment_name)
            settings["name"] = settings.get("name") or name
            settings["group"] = settings.get("group") or group
            logger = WandbLogger(run_dir, config, **settings)
        else:
            raise ConfigError(f"logger={kind} is not a logger", f"use one of {', '.join(LOGGERS)}")
        logger.log_hparams(config)
        loggers.append(logger)
    return loggers


class RunRecorder:
    """What a run records while it trains, row by row: the loggers, and the distribution at each evaluation.

    `train(..., hooks=[EachRow(recorder)])` calls it with each finished metrics row and the policy.
    """

    def __init__(self, loggers: list[MetricsLogger], run_dir: Path | None = None, task=None):
        self.loggers = loggers if is_main_process() else []
        distribution = getattr(task, "distribution", None)
        self.distribution = distribution if run_dir is not None and is_main_process() else None
        self.path = None if run_dir is None else Path(run_dir) / DISTRIBUTIONS
        self.started = False

    def __call__(self, row: dict, policy) -> None:
        for logger in self.loggers:
            logger.log_row(row)
        if self.distribution is not None and any(k.startswith("eval/") for k in row):
            self.record_distribution(int(row["iteration"]), self.distribution(policy))

    def record_distribution(self, iteration: int, table: list[dict]) -> None:
        """Append one evaluation's distribution (rows: completion, reward, reference, policy, optimum) with its
        iteration. The first call of a (resumed) run keeps only the rows of earlier iterations."""
        columns = ["iteration", *table[0].keys()]
        if not self.started:
            kept = _read_rows(self.path, columns, before=iteration)
            atomic_write_bytes(self.path, _csv_text(columns, kept, header=True))
            self.started = True
        with open(self.path, "ab") as f:
            f.write(_csv_text(columns, [{"iteration": iteration, **r} for r in table], header=False))

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()


def _csv_text(columns: list[str], rows: list[dict], header: bool) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    if header:
        writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue().encode()


def _read_rows(path: Path, columns: list[str], before: int) -> list[dict]:
    """Complete rows of an earlier distributions.csv with iteration < `before` (a torn last line is dropped)."""
    if path is None or not path.exists():
        return []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != columns:
            return []
        return [
            r for r in reader if None not in r.values() and r["iteration"].isdigit() and int(r["iteration"]) < before
        ]


def start_loggers(cfg, run_dir: Path) -> list[MetricsLogger]:
    """The loggers of a composed config (its `logger` node), with its resolved config as hyper-parameters."""
    from omegaconf import OmegaConf

    logger_cfg = OmegaConf.select(cfg, "logger", default=None)
    if logger_cfg is None:
        return []
    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("hydra", None)
    return make_loggers(OmegaConf.to_container(logger_cfg, resolve=True), run_dir, config, cfg.experiment_name)
