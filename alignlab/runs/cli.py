"""The `alignlab` command (also `python -m alignlab`): compose the config with Hydra, run, write outputs.

A run directory holds `.hydra/` (the resolved config), `metrics.csv`, `summary.json` and, when
`plot=true`, `figure.png`. A run whose `summary.json` exists is skipped unless `force=true`, so a crashed
sweep can simply be launched again.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib.resources
import json
import shutil
import sys
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from alignlab.core.reward_mix import MixtureSpec, with_reward_mixture
from alignlab.core.roles import resolve_reward
from alignlab.core.sampling import SamplingConfig
from alignlab.core.train import EachRow, TrainConfig, check_run, train
from alignlab.errors import AlignlabError, ConfigError
from alignlab.runs.loggers import RunRecorder, start_loggers
from alignlab.runs.schema import check_config, schema_type
from alignlab.runs.tuned import apply_tuned
from alignlab.storage.lock import RunDirLock
from alignlab.storage.recording import check_recordable
from alignlab.storage.run import RunStorage
from alignlab.storage.rundir import (
    CHECKPOINT,
    SUMMARY,
    check_file_slots,
    check_writable,
    finished_run_problem,
    write_json,
)
from alignlab.storage.warmstart import REFERENCE_MODES, check_finished, save_policy

GROUPS = ("task", "algo", "sampling", "experiment", "data", "mix", "logger", "tuned")


def run_name(overrides: str) -> str:
    """A run directory's name from its overrides; one longer than a file name may be (255 bytes) keeps its
    first 150 characters and a hash of the whole, so a sweep over many settings still finds its runs."""
    name = overrides.replace("/", "_") or "default"
    return name if len(name.encode()) <= 200 else f"{name[:150]}...{hashlib.sha1(name.encode()).hexdigest()[:12]}"


OmegaConf.register_new_resolver("alignlab_run_name", run_name, replace=True)


def data_source(data: str, seed) -> str:
    """The run directory of this job's sibling that differs only in `data=<data>` (its seed=K/ directory when it
    ran several seeds): the source run of Tang et al.'s data ablations within one sweep (conf/data/). The sweep
    runs its jobs in order, the source first, with Hydra's basic launcher."""
    runtime = HydraConfig.get()
    overrides = runtime.job.override_dirname.split(",")
    name = ",".join(f"data={data}" if o.startswith("data=") else o for o in overrides).replace("/", "_")
    source = Path(runtime.runtime.output_dir).parent / name
    per_seed = source / f"seed={seed}"
    return str(per_seed if per_seed.is_dir() else source)


OmegaConf.register_new_resolver("alignlab_data_source", data_source, replace=True)


def fail(message: str) -> None:
    """Stop with one line on stderr and exit status 2."""
    print(f"alignlab: error: {message}", file=sys.stderr)
    sys.exit(2)


def group_options(group: str) -> list[str]:
    folder = importlib.resources.files("alignlab.conf") / group
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


# The run directory when this command created it (Hydra does, before the run starts): a run that stops on a
# bad setting before training removes it again, so that a refused command leaves nothing behind.
FRESH_RUN_DIR: Path | None = None


def remove_if_fresh(run_dir: Path) -> None:
    """Remove the directories this command created for `run_dir` (the topmost that did not exist before)
    when they hold nothing but Hydra's record of the config: a refused run leaves nothing behind."""
    if FRESH_RUN_DIR is None or not Path(run_dir).absolute().is_relative_to(FRESH_RUN_DIR):
        return
    if all(".hydra" in p.relative_to(FRESH_RUN_DIR).parts for p in FRESH_RUN_DIR.rglob("*") if p.is_file()):
        shutil.rmtree(FRESH_RUN_DIR, ignore_errors=True)


class OutputDirCheck(Callback):
    """Refuse an output directory that cannot be written before Hydra creates anything in it."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        global FRESH_RUN_DIR
        FRESH_RUN_DIR = None
        created = Path(config.hydra.run.dir).absolute()
        while not created.exists():
            FRESH_RUN_DIR, created = created, created.parent
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


def _suggest_option(group: str, value: str, options: list[str]) -> str:
    lower = {o.lower(): o for o in options}
    close = difflib.get_close_matches(value.lower(), list(lower), n=1)
    return f"did you mean {group}={lower[close[0]]}? " if close else ""


def _leaf_keys(node, prefix: str = "") -> list[str]:
    keys = []
    for key in node.keys():
        full = f"{prefix}{key}"
        child = node._get_node(key)
        keys.extend(_leaf_keys(child, f"{full}.") if isinstance(child, DictConfig) else [full])
    return keys


def unknown_key_message(key: str, cfg: DictConfig | None) -> str:
    """One line for a key that no schema has, with the closest real keys."""
    known = _leaf_keys(cfg) if cfg is not None else []
    last = key.rsplit(".", 1)[-1]
    same_name = [k for k in known if k.rsplit(".", 1)[-1] == last and k != key]
    close = same_name or difflib.get_close_matches(key, known, n=3, cutoff=0.75)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    return f"unknown key '{key}' (no {parent or 'top-level'} setting has that name). Fix: {hint}check the spelling."


def composition_error_message(error: Exception, cfg: DictConfig | None) -> str:
    """Hydra's and OmegaConf's multi-line composition errors as one line naming the key and the fix."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    cause = error.__cause__ or error
    key = getattr(cause, "full_key", None)
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and key:
        return unknown_key_message(key, cfg)
    if isinstance(cause, ValidationError) and key:
        problem = str(cause).splitlines()[0].rstrip(".")
        declared = schema_type(getattr(cause, "object_type", None), getattr(cause, "key", None))
        kind = f" ({declared})" if declared else ""
        return f"{key}: {problem}. Fix: give {key} a value of its type{kind}."
    return " ".join(str(error).split())


UNKNOWN = object()  # precheck did not compose the config that Hydra runs


def precheck(argv: list[str]):
    """Compose and check the config before Hydra creates anything: an unknown option or key, a wrong type or an
    out-of-range value stops here with one line naming the key and the fix, and nothing is written.

    Returns the composed `hydra.mode` when the command runs one configuration and no Hydra override can change
    it (Hydra then need not compose the config again to read it: `known_mode`), UNKNOWN otherwise."""
    from hydra import compose, initialize_config_module
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if any(a.startswith(("hydra.searchpath", "--config-dir", "-cd")) for a in argv):
        return UNKNOWN  # options may come from another config directory: Hydra checks them
    try:
        overrides = OverridesParser.create().parse_overrides(_overrides(argv))
    except Exception as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        fail(f"{first}. Fix: quote a value with spaces or special characters, e.g. 'task.chat_template=\"...\"'.")
    mode_is_fixed = all(
        o.key_or_group.startswith("hydra.") and not o.key_or_group.startswith("hydra.mode")
        for o in overrides
        if o.is_hydra_override()
    )
    overrides = [o for o in overrides if not o.is_hydra_override()]
    fixed, sweeps = [], []
    for o in overrides:
        key = o.key_or_group
        values = None
        if o.is_sweep_override():
            try:
                values = list(o.sweep_string_iterator())
            except Exception:
                continue  # a range or interval sweep of numbers: checked by the jobs themselves
            sweeps.append([f"{o.get_key_element()}={v}" for v in values])
        else:
            fixed.append(o.input_line)
        if key in GROUPS and not (o.is_add() or o.is_delete()):
            options = group_options(key)
            for value in values if values is not None else [o.value()]:
                for item in value if isinstance(value, list) else [value]:  # logger=[csv,tensorboard]
                    if item is not None and str(item) not in options:
                        hint = _suggest_option(key, str(item), options)
                        fail(f"unknown {key} '{item}'. Fix: {hint}choose one of {', '.join(options)}.")
    if not overrides:
        return UNKNOWN  # the shipped defaults: test_config.py composes and checks them
    variants = [fixed] + [fixed + [v] for sweep in sweeps for v in sweep]
    one_run = len(variants) == 1 and mode_is_fixed
    with initialize_config_module("alignlab.conf", version_base="1.3"):
        for variant in variants:
            try:
                cfg = compose("config", overrides=variant, return_hydra_config=one_run)
            except Exception as error:
                selections = [v for v in variant if v.split("=", 1)[0] in GROUPS]
                try:
                    plain = compose("config", overrides=selections)
                except Exception:
                    plain = None
                fail(composition_error_message(error, plain))
            if one_run:
                mode = cfg.hydra.mode
                with open_dict(cfg):
                    del cfg["hydra"]
            try:
                check_settings(cfg)
            except AlignlabError as error:
                fail(str(error))
    return mode if one_run else UNKNOWN


@contextlib.contextmanager
def known_mode(mode):
    """Hydra composes the whole config once only to read `hydra.mode` (Hydra.get_mode), then again to run it;
    when the precheck has read it (`mode` is not UNKNOWN), that first composition is skipped: one composition
    less in every run's start-up."""
    from hydra._internal.hydra import Hydra

    original = getattr(Hydra, "get_mode", None)
    if mode is UNKNOWN or original is None:
        yield
        return
    Hydra.get_mode = lambda self, config_name, overrides: mode
    try:
        yield
    finally:
        Hydra.get_mode = original


def check_settings(cfg: DictConfig) -> None:
    """Every check that needs no task: keys the schemas do not have (added with +), the root's ranges, and the
    objective's, sampling's and training loop's own checks."""
    check_config(cfg)
    algo_cfg = OmegaConf.to_container(cfg.algo, resolve=True)
    algo_cfg.pop("name", None)
    sampling = SamplingConfig(**OmegaConf.to_container(cfg.sampling, resolve=True))
    train_cfg = TrainConfig(**OmegaConf.to_container(cfg.train, resolve=True))
    check_run(build(algo_cfg), sampling, train_cfg)
    RunStorage.check_sampling(sampling)  # a missing or damaged recording, before anything is written


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
    algo_cfg = OmegaConf.to_container(cfg.algo, resolve=True)
    algo_cfg.pop("name", None)
    sampling = SamplingConfig(**OmegaConf.to_container(cfg.sampling, resolve=True))
    train_cfg = TrainConfig(**OmegaConf.to_container(cfg.train, resolve=True))
    try:
        task_cfg = resolve_reward(OmegaConf.to_container(cfg.task, resolve=True))  # a role (hard, easy) -> a name
        check_config(cfg)
        objective = build(algo_cfg)
        check_run(objective, sampling, train_cfg)  # before the task is built: that may load a model
        check_data_options(cfg, train_cfg)
        init = {"init_from": cfg.get("init_from"), "init_reference": cfg.get("init_reference", "keep")}
        storage = RunStorage(run_dir, numbers_config(cfg), **init, record_rollouts=bool(cfg.get("record_rollouts")))
        storage.check_sampling(sampling)
        loggers = start_loggers(cfg, run_dir)
        task = build(task_cfg)
        task = with_reward_mixture(task, cfg.get("reward_mix"), train_cfg.iterations, cfg.task.get("roles"))
    except AlignlabError:
        remove_if_fresh(run_dir)
        raise
    if cfg.force:  # a forced re-run starts afresh instead of resuming an old checkpoint
        (run_dir / CHECKPOINT).unlink(missing_ok=True)

    recorder = RunRecorder(loggers, run_dir if cfg.get("record_distribution", True) else None, task)
    try:
        evaluation, _, policy = train(task, objective, sampling, train_cfg, cfg.seed, [EachRow(recorder), storage])
    finally:
        recorder.close()
    if cfg.get("save_policy", False):
        save_policy(run_dir, task, policy)
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


# Keys that change how a run is shown or saved, not its numbers: a checkpoint may be resumed across them.
NOT_NUMBERS = (
    "force",
    "plot",
    "experiment_name",
    "num_seeds",
    "train.progress",
    "train.checkpoint_every",
    "logger",
    "record_distribution",
    "record_rollouts",
    "save_policy",
)


def numbers_config(cfg: DictConfig) -> dict:
    """The resolved config that sets a run's numbers, recorded in its checkpoints."""
    config = OmegaConf.to_container(cfg, resolve=True)
    for key in NOT_NUMBERS:
        *parents, last = key.split(".")
        node = config
        for parent in parents:
            node = node.get(parent, {})
        node.pop(last, None)
    return config


def finished(run_dir: Path, force: bool) -> dict | None:
    """The summary of a finished run in `run_dir` (None: run it). Damaged results are said and re-run."""
    if force or not (run_dir / SUMMARY).exists():
        return None
    problem = finished_run_problem(run_dir)
    if problem is not None:
        print(f"alignlab: {run_dir} is not a finished run ({problem}): running it again.")
        return None
    return json.loads((run_dir / SUMMARY).read_text())


def check_data_options(cfg: DictConfig, train_cfg: TrainConfig) -> None:
    """The data options' checks that need no task (alignlab/storage/warmstart.py, alignlab/core/reward_mix.py)."""
    if cfg.get("init_from") is not None:
        check_finished(cfg.init_from, "init_from")
    if cfg.get("init_reference", "keep") not in REFERENCE_MODES:
        raise ConfigError(f"init_reference={cfg.init_reference} is not a reference mode", "use keep or move")
    if cfg.get("reward_mix") is not None:
        MixtureSpec.from_config(OmegaConf.to_container(cfg.reward_mix, resolve=True), train_cfg.iterations)
    if cfg.get("record_rollouts", False):
        check_recordable()


def run_seeds(cfg: DictConfig, run_dir: Path) -> dict:
    """`num_seeds` runs of one configuration in one job: seed=K/ subdirectories (each a full run directory
    with its own .hydra/ record) and an aggregate summary.json with the mean and s.d. across seeds."""
    summaries = []
    overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith(("seed=", "num_seeds="))]
    for seed in range(cfg.seed, cfg.seed + cfg.num_seeds):
        seed_dir = run_dir / f"seed={seed}"
        check_file_slots(seed_dir)
        done = finished(seed_dir, cfg.force)
        if done is not None:
            summaries.append(done)
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
            if key != "wall_seconds":  # a time's spread is no result, and would make a resumed job differ
                aggregate[f"{key}_std"] = float(values.std()) if len(values) > 1 else 0.0
        elif key in ("task", "algo", "sampling"):
            aggregate[key] = value
    write_json(run_dir / SUMMARY, aggregate)
    return aggregate


@hydra.main(version_base="1.3", config_path="pkg://alignlab.conf", config_name="config")
def run(cfg: DictConfig) -> dict | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        lock = RunDirLock(run_dir).acquire()  # one writer per run directory (a sweep: per job), for the run's life
    except AlignlabError as error:
        fail(str(error))
    try:
        return run_locked(cfg, run_dir)
    finally:
        lock.release()


def run_locked(cfg: DictConfig, run_dir: Path) -> dict | None:
    summary_path = run_dir / SUMMARY
    try:
        check_file_slots(run_dir)
    except AlignlabError as error:
        remove_if_fresh(run_dir)
        fail(str(error))
    done = finished(run_dir, cfg.force)
    if done is not None:
        print(f"alignlab: {run_dir} is already done ({SUMMARY} exists): skipped. Use force=true to run it again.")
        return done
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        summary = run_experiment(cfg, run_dir) if cfg.num_seeds == 1 else run_seeds(cfg, run_dir)
    except AlignlabError as error:
        remove_if_fresh(run_dir)
        fail(str(error))
    line = ", ".join(f"{k}={summary[k]:.4g}" for k in ("reward", "kl_ref") if k in summary)
    seeds = f"seed={cfg.seed}" if cfg.num_seeds == 1 else f"seeds {cfg.seed}..{cfg.seed + cfg.num_seeds - 1} (mean)"
    print(
        f"alignlab: {cfg.task.name} / {cfg.algo.name} / {cfg.sampling.name} {seeds}: {line} "
        f"({summary['wall_seconds']:.2f} s) -> {summary_path}"
    )
    if cfg.plot:
        from alignlab.plots.plot import plot_run, plot_sweep

        figures = [plot_run(run_dir)] if cfg.num_seeds == 1 else [p for p in plot_sweep(run_dir) if p.suffix == ".png"]
        for figure in figures:
            print(f"alignlab: figure -> {figure}")
    return summary


def main() -> None:
    with known_mode(precheck(sys.argv[1:])):
        run()


if __name__ == "__main__":
    main()
