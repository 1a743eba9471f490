"""The `alignlab` command (also `python -m alignlab`): compose the config with Hydra, run, write outputs.

A run directory holds `.hydra/` (the resolved config), `metrics.csv`, `summary.json` and, when
`plot=true`, `figure.png`. A run whose `summary.json` exists is skipped unless `force=true`, so a crashed
sweep can simply be launched again.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.resources
import itertools
import json
import os
import shutil
import sys
from pathlib import Path
from typing import NoReturn

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

# The config package registers its schemas in Hydra's ConfigStore when imported. Every run imports it anyway (Hydra
# does, while composing); importing it here first means it is there for `--info defaults`, which reads the defaults
# tree before Hydra imports the package: the same work, done earlier.
import alignlab.conf  # noqa: F401
from alignlab.core.reward_mix import MixtureSpec, with_reward_mixture
from alignlab.core.roles import resolve_reward
from alignlab.core.sampling import SamplingConfig
from alignlab.core.train import EachRow, TrainConfig, check_run, train
from alignlab.errors import AlignlabError, ConfigError
from alignlab.runs.loggers import RunRecorder, start_loggers
from alignlab.runs.schema import check_config, check_root, schema_type
from alignlab.runs.tuned import apply_tuned
from alignlab.storage.lock import RunDirLock
from alignlab.storage.run import RunStorage
from alignlab.storage.rundir import (
    CHECKPOINT,
    SUMMARY,
    check_file_slots,
    check_writable,
    finished_run_problem,
    is_main_process,
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


def fail(message: str) -> NoReturn:
    """Stop with one line on stderr and exit status 2."""
    print(f"alignlab: error: {message}", file=sys.stderr)
    sys.exit(2)


# The run directory when this command created it (Hydra does, before the run starts): a run that stops on a
# bad setting before training removes it again, so that a refused command leaves nothing behind.
FRESH_RUN_DIR: Path | None = None
# Where this command's run or sweep writes (set by RunChecks and the task function): Ctrl-C names it.
OUTPUT_DIR: Path | None = None


def remove_if_fresh(run_dir: Path) -> None:
    """Remove the directories this command created for `run_dir` (the topmost that did not exist before)
    when they hold nothing but Hydra's record of the config: a refused run leaves nothing behind."""
    if FRESH_RUN_DIR is None or not Path(run_dir).absolute().is_relative_to(FRESH_RUN_DIR):
        return
    if all(".hydra" in p.relative_to(FRESH_RUN_DIR).parts for p in FRESH_RUN_DIR.rglob("*") if p.is_file()):
        shutil.rmtree(FRESH_RUN_DIR, ignore_errors=True)


class RunChecks(Callback):
    """Hydra's callback (conf/config.yaml, hydra.callbacks) for what must be checked before Hydra writes
    anything: a writable output directory; for a run, an experiment that sweeps launched without -m and a
    finished run with other settings in the same directory; for a sweep, every job's settings, so that a
    refused sweep writes nothing. A run's own settings are checked once, by the task function."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        global FRESH_RUN_DIR, OUTPUT_DIR
        FRESH_RUN_DIR = None
        OUTPUT_DIR = Path(config.hydra.run.dir)
        created = OUTPUT_DIR.absolute()
        while not created.exists():
            FRESH_RUN_DIR, created = created, created.parent
        refuse_sweep_without_multirun(config)
        refuse_other_settings(OUTPUT_DIR, config)
        check_output_dir(config.hydra.run.dir, "hydra.run.dir")  # last: it creates the directory to try it

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        global OUTPUT_DIR
        OUTPUT_DIR = Path(config.hydra.sweep.dir)
        check_sweep(config, kwargs.get("config_name") or "config")
        check_output_dir(config.hydra.sweep.dir, "hydra.sweep.dir")  # last: it creates the directory to try it


def check_output_dir(directory: str, key: str) -> None:
    reason = check_writable(Path(directory))
    if reason is not None:
        fail(f"cannot write the output directory {directory} ({reason}). Fix: choose a writable one with {key}=PATH.")


def refuse_sweep_without_multirun(config: DictConfig) -> None:
    """An experiment that sweeps (hydra.sweeper.params, or a search sweeper such as Optuna's) would run only one
    configuration without -m."""
    sweeper = config.hydra.sweeper
    params = sweeper.get("params") or {}
    if not params and str(sweeper.get("_target_", "")).endswith(".BasicSweeper"):
        return
    name = config.hydra.runtime.choices.get("experiment")
    what = f"experiment={name}" if name else "this config"
    swept = f" over {', '.join(params)}" if params else ""
    fail(
        f"{what} is a sweep{swept}: without -m it would run one configuration. "
        f"Fix: add -m, as in alignlab -m {what if name else '...'}."
    )


# Keys that change how a run is shown, not what it computes or writes: a finished run launched again with other
# values of these is the same run (and is skipped).
SHOWN_NOT_RUN = ("force", "plot", "experiment_name", "logger", "train.progress", "train.checkpoint_every")


def _flat(node, prefix: str = "") -> dict:
    """{'algo': {'beta': 0.1}} -> {'algo.beta': 0.1}."""
    out = {}
    for key, value in node.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def changed_settings(run_dir: Path, config: DictConfig) -> list[str]:
    """The keys whose values in `config` differ from those of the run recorded in `run_dir/.hydra/config.yaml`
    (compared unresolved, as Hydra records them), but for SHOWN_NOT_RUN; [] when there is no record."""
    saved = run_dir / ".hydra" / "config.yaml"
    if not saved.is_file():
        return []
    old = _flat(OmegaConf.to_container(OmegaConf.load(saved), resolve=False))
    new = OmegaConf.to_container(config, resolve=False)
    new.pop("hydra", None)
    new = _flat(new)
    absent = object()
    changed = [k for k in sorted(old.keys() | new.keys()) if old.get(k, absent) != new.get(k, absent)]
    changed = [k for k in changed if not any(k == s or k.startswith(f"{s}.") for s in SHOWN_NOT_RUN)]
    return sorted(changed, key=lambda k: not k.endswith(".name"))  # algo.name before the objective's knobs


def refuse_other_settings(run_dir: Path, config: DictConfig) -> None:
    """A finished run launched again is skipped; launched with other settings it is refused, as the resume of a
    checkpoint with other settings is, so that its results never pass for another configuration's."""
    if config.force or not (run_dir / SUMMARY).exists():
        return
    changed = changed_settings(run_dir, config)
    if changed:
        shown = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
        fail(
            f"{run_dir} holds a finished run with other settings ({shown} differ). Fix: choose another "
            "directory with hydra.run.dir=PATH, or add force=true to replace that run."
        )


def sweep_jobs(config: DictConfig) -> list[list[str]]:
    """Each job's overrides, formed as Hydra's basic sweeper forms them: the sweeper's params, then the command
    line's overrides, a key given twice keeping its last values; the jobs are the product of every key's values.
    A sweep that is not a list of values (an interval, for a search sweeper) is checked at its other keys."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = config.hydra.sweeper.get("params") or {}
    lines = [f"{key}={value}" for key, value in params.items()] + list(config.hydra.overrides.task)
    values: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides(lines):
        key = override.get_key_element()
        if not override.is_sweep_override():
            values[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            values[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            values.pop(key, None)
    return [list(job) for job in itertools.product(*values.values())]


def check_sweep(config: DictConfig, config_name: str) -> None:
    """Compose each job of the sweep once, with Hydra's compose API, and check its settings: a sweep with one
    impossible job stops before any job runs or anything is written."""
    from hydra import compose

    jobs = sweep_jobs(config)
    for job in jobs:
        where = f"sweep job {','.join(job)}: " if len(jobs) > 1 else ""
        try:
            cfg = compose(config_name, overrides=job)
            for key in ("dataset", "behaviour_from"):
                if "alignlab_data_source" in str(cfg.sampling._get_node(key)._value()):
                    cfg.sampling[key] = None  # a sibling job of this sweep writes it: the job checks it
            check_settings(cfg)
        except AlignlabError as error:
            fail(f"{where}{error}")
        except Exception as error:
            message = hydra_error_message(error)
            if message is None:
                raise
            fail(f"{where}{message}")


def group_options(group: str) -> list[str]:
    """The options of one of alignlab's config groups (conf/GROUP/*.yaml); [] for another group."""
    folder = importlib.resources.files("alignlab.conf") / group
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml")) if folder.is_dir() else []


def group_listing() -> str:
    """The user's groups and their options, one group a line, for `alignlab --help` (conf/hydra/help/)."""
    return "\n".join(f"  {group:15s} {', '.join(group_options(group))}" for group in GROUPS)


OmegaConf.register_new_resolver("alignlab_groups", group_listing, replace=True)


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


def _chosen_groups() -> DictConfig | None:
    """The default config with the command line's group choices (`algo=kto`), to suggest keys from; None if even
    that does not compose. Only a hint: sweeps and anything else on the command line are left out."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    choices = [a for a in sys.argv[1:] if a.split("=", 1)[0] in GROUPS and "," not in a]
    initialized = GlobalHydra.instance().is_initialized()
    try:
        if initialized:
            return compose("config", overrides=choices)
        with initialize_config_module("alignlab.conf", version_base="1.3"):
            return compose("config", overrides=choices)
    except Exception:
        return None


def _innermost(error: BaseException) -> BaseException:
    while error.__cause__ is not None:
        error = error.__cause__
    return error


# How Hydra's _run_hydra refuses two of its modes in one command (a ValueError, not one of its own errors).
HYDRA_ONE_MODE = "Only one of --run, --multirun, --cfg, --info and --shell_completion"


def hydra_error_message(error: Exception) -> str | None:
    """One line for an error of composition (an unknown option, key or type, an override that does not parse, a
    value its resolver refuses) or of Hydra's flags, naming the key and the fix; None for any other error."""
    from hydra.errors import HydraException, MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

    if isinstance(error, ValueError) and str(error).startswith(HYDRA_ONE_MODE):
        return (
            "one command takes one of Hydra's modes: -m (--multirun), --cfg, --info, --shell-completion or --run. "
            "Fix: give one; to see one job of a sweep, drop -m and give one value per swept key "
            "(alignlab --cfg job algo=ipo)."
        )
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and "/" in error.missing_cfg_file:
        group, option = error.missing_cfg_file.rsplit("/", 1)
        options = sorted(error.options or group_options(group))
        hint = _suggest_option(group, option, options)
        return f"unknown {group} '{option}'. Fix: {hint}choose one of {', '.join(options)}."
    if not isinstance(error, (HydraException, OmegaConfBaseException)):
        return None
    cause = error.__cause__ if isinstance(error, HydraException) and error.__cause__ is not None else error
    key = getattr(cause, "full_key", None)
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and key:
        return unknown_key_message(key, _chosen_groups())
    if isinstance(cause, ValidationError) and key:
        problem = str(cause).splitlines()[0].rstrip(".")
        declared = schema_type(getattr(cause, "object_type", None), getattr(cause, "key", None))
        kind = f" ({declared})" if declared else ""
        return f"{key}: {problem}. Fix: give {key} a value of its type{kind}."
    if isinstance(error, OverrideParseException):
        return override_parse_message(error)
    innermost = _innermost(error)
    if "Fix:" in str(innermost):  # a resolver's own one-line refusal (alignlab_rounds)
        return " ".join(str(innermost).split())
    first = " ".join(str(error).split("\n\n")[0].split()).rstrip(".")
    at = f" ({key})" if key else ""
    return f"{first}{at}. Fix: check the command line against `alignlab --help`; quote values with spaces or brackets."


def override_parse_message(error: Exception) -> str:
    """An override Hydra's grammar rejects, named: each `key=value` of the command line is parsed alone, with
    Hydra's own parser, to find it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    problem = str(error).splitlines()[0].split(" See https://")[0].rstrip(".")
    for token in (a for a in sys.argv[1:] if "=" in a and not a.startswith("-")):
        try:
            parser.parse_overrides([token])
        except Exception:
            key = token.split("=", 1)[0]
            return f"cannot read {token} ({problem}). Fix: quote the value, e.g. '{key}=\"...\"'."
    return f"{problem}. Fix: quote a value with spaces or special characters, e.g. 'KEY=\"...\"'."


def interrupted() -> None:
    """Ctrl-C: one line that says where the work stands and how to go on, then exit 130 (the shell's code for it)."""
    where = OUTPUT_DIR
    if where is None:
        resume = "run the same command again"
    elif any(where.rglob(CHECKPOINT)) if where.is_dir() else False:
        resume = f"run the same command again: it resumes from the checkpoint in {where}"
    else:
        resume = (
            f"run the same command again: {where} has no checkpoint, so it starts over "
            "(with train.checkpoint_every=N a run resumes where it stopped)"
        )
    print(f"alignlab: interrupted. Fix: {resume}.", file=sys.stderr)
    sys.exit(130)


def check_settings(cfg: DictConfig) -> None:
    """Every check that needs neither a task nor a run directory, for a sweep's jobs before any runs: keys the
    schemas do not have (added with +), non-finite numbers, the root's ranges, the objective's, sampling's and
    the training loop's own checks, and the data options'."""
    cfg = apply_tuned(cfg)
    check_config(cfg)
    algo_cfg = OmegaConf.to_container(cfg.algo, resolve=True)
    algo_cfg.pop("name", None)
    sampling = SamplingConfig(**OmegaConf.to_container(cfg.sampling, resolve=True))
    train_cfg = TrainConfig(**OmegaConf.to_container(cfg.train, resolve=True))
    check_run(build(algo_cfg, "algo"), sampling, train_cfg)
    check_data_options(cfg, train_cfg)
    RunStorage.check_sampling(sampling)  # a missing or damaged recording, before anything is written
    check_extras(cfg)


# The modules of the `lm` extra (pyproject.toml) that the tier-2 and tier-3 tasks import.
LM_EXTRA = ("transformers", "accelerate", "datasets", "peft", "gguf", "math_verify", "tokenizers", "safetensors")


def lm_extras_missing(node: dict, group: str, module: str) -> ConfigError:
    return ConfigError(
        f"{group}={node.get('name', node.get('_target_'))} needs the language-model extras ({module} is not installed)",
        "run `make setup-lm` (or pip install -e '.[lm]')",
    )


def check_extras(cfg: DictConfig) -> None:
    """The optional packages the task's tier imports (its schema's `extra_modules`), before anything is built."""
    for module in getattr(OmegaConf.get_type(cfg.task), "extra_modules", ()):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            raise lm_extras_missing({"name": cfg.task.name}, "task", error.name or module) from None


def check_target(node: dict, group: str) -> None:
    """Import the class a config's `_target_` names, so that a missing extra or a misspelt class stops in one line
    before anything is built or written."""
    target = str(node.get("_target_"))
    module_name, _, name = target.rpartition(".")
    try:
        found = hasattr(importlib.import_module(module_name), name) if module_name else False
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if missing.split(".")[0] in LM_EXTRA:
            raise lm_extras_missing(node, group, missing) from None
        if not module_name.startswith(missing):
            raise ConfigError(
                f"{group}._target_={target} needs the module {missing}, which is not installed",
                f"install it (pip install {missing.split('.')[0]})",
            ) from None
        found = False
    if not found:
        raise ConfigError(
            f"{group}._target_={target} is not a class that can be imported",
            f"choose a {group} option (alignlab --help lists them) instead of setting {group}._target_",
        )


def build(node: dict, group: str | None = None):
    """hydra.utils.instantiate, letting our own errors through unwrapped (one line, with the fix); with `group`,
    a `_target_` that cannot be imported is one line too."""
    if group is not None:
        check_target(node, group)
    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, AlignlabError):
            raise cause from None
        missing = getattr(cause, "name", None) if isinstance(cause, ModuleNotFoundError) else None
        if group is not None and missing and missing.split(".")[0] in LM_EXTRA:  # a tier that imports it late
            raise lm_extras_missing(node, group, missing) from None
        raise


def run_experiment(cfg: DictConfig, run_dir: Path) -> dict:
    """Build the task, objective and regime from the config, train, and write the run directory."""
    cfg = apply_tuned(cfg)
    algo_cfg = OmegaConf.to_container(cfg.algo, resolve=True)
    algo_cfg.pop("name", None)
    sampling = SamplingConfig(**OmegaConf.to_container(cfg.sampling, resolve=True))
    train_cfg = TrainConfig(**OmegaConf.to_container(cfg.train, resolve=True))
    try:
        check_config(cfg)
        task_cfg = resolve_reward(OmegaConf.to_container(cfg.task, resolve=True))  # a role (hard, easy) -> a name
        objective = build(algo_cfg, "algo")
        check_run(objective, sampling, train_cfg)  # before the task is built: that may load a model
        check_data_options(cfg, train_cfg)
        check_extras(cfg)  # before the loggers write anything: a missing extra writes nothing
        check_target(task_cfg, "task")
        init = {"init_from": cfg.get("init_from"), "init_reference": cfg.get("init_reference", "keep")}
        storage = RunStorage(run_dir, numbers_config(cfg), **init, record_rollouts=bool(cfg.get("record_rollouts")))
        storage.check_sampling(sampling)
        loggers = start_loggers(cfg, run_dir)
        task = build(task_cfg, "task")
        roles = cfg.task.get("roles")
        task = with_reward_mixture(task, cfg.get("reward_mix"), train_cfg.iterations, roles, cfg.task.reward)
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
    "findings.seeds_note",
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
    """The data options' checks that need no task (alignlab/storage/warmstart.py, alignlab/core/reward_mix.py),
    and options that would have no effect in this run, refused rather than ignored. (record_rollouts is checked
    by train(), once.)"""
    if cfg.get("init_from") is not None:
        check_finished(cfg.init_from, "init_from")
    if cfg.get("init_reference", "keep") not in REFERENCE_MODES:
        raise ConfigError(f"init_reference={cfg.init_reference} is not a reference mode", "use keep or move")
    if cfg.get("init_reference", "keep") == "move" and cfg.get("init_from") is None:
        raise ConfigError(
            "init_reference=move moves the reference to init_from's policy, but init_from is not set",
            "set init_from=RUN_DIR (a run saved with save_policy=true), or drop init_reference=move",
        )
    sampling = cfg.sampling
    reads_offline_data = sampling.sync_every is None or sampling.offline_fraction > 0
    for key in ("dataset", "behaviour_from"):
        if sampling.get(key) is not None and not reads_offline_data:
            raise ConfigError(
                f"sampling.{key} names offline data, but this run is {sampling.name} with no offline data "
                "(sampling.offline_fraction=0)",
                f"add sampling=offline, or set sampling.offline_fraction above 0, or drop sampling.{key}",
            )
    if cfg.get("reward_mix") is not None:
        reward_mix = cfg.reward_mix
        if OmegaConf.is_config(reward_mix):
            reward_mix = OmegaConf.to_container(reward_mix, resolve=True)
        MixtureSpec.from_config(reward_mix, train_cfg.iterations)


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
    """Hydra's task function: one job. Its settings are checked here, once (a sweep's jobs were checked before
    any ran, by RunChecks.on_multirun_start); whatever is refused leaves nothing behind."""
    global OUTPUT_DIR
    run_dir = OUTPUT_DIR = Path(HydraConfig.get().runtime.output_dir)
    try:
        lock = RunDirLock(run_dir)  # one writer per run directory (a sweep: per job), for the run's life
        if is_main_process():  # the other ranks of a multi-process launch write nothing there
            lock.acquire()
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
    try:
        check_root(cfg)
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        summary = run_experiment(cfg, run_dir) if cfg.num_seeds == 1 else run_seeds(cfg, run_dir)
    except AlignlabError as error:
        remove_if_fresh(run_dir)
        fail(str(error))
    except OmegaConfBaseException as error:  # a value its resolver refuses (alignlab_rounds), read in the job
        remove_if_fresh(run_dir)
        fail(hydra_error_message(error))
    except (MemoryError, RuntimeError) as error:  # torch's allocators raise RuntimeErrors (OutOfMemoryError)
        if not isinstance(error, MemoryError) and not any(s in str(error) for s in OUT_OF_MEMORY):
            raise
        remove_if_fresh(run_dir)
        fail(out_of_memory_message(cfg, error))
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


OUT_OF_MEMORY = ("can't allocate memory", "out of memory", "Cannot allocate memory")


def out_of_memory_message(cfg: DictConfig, error: BaseException) -> str:
    sampling = cfg.sampling
    per_round = sampling.prompts_per_round * sampling.samples_per_prompt
    return (
        f"out of memory ({type(error).__name__}) with {per_round} samples a round (sampling.prompts_per_round="
        f"{sampling.prompts_per_round} x sampling.samples_per_prompt={sampling.samples_per_prompt}). "
        "Fix: lower sampling.prompts_per_round or sampling.samples_per_prompt."
    )


def main() -> None:
    """`alignlab`: Hydra's own command line, every flag included (--help, --cfg, --info, --shell-completion,
    --experimental-rerun, -m with any launcher). Hydra raises its composition errors to this function
    (HYDRA_FULL_ERROR), which says them in one line; HYDRA_FULL_ERROR=1 set by the user keeps Hydra's report."""
    users_full_error = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        run()
    except KeyboardInterrupt:
        interrupted()
    except Exception as error:
        message = None if users_full_error == "1" else hydra_error_message(error)
        if message is None:
            raise
        fail(message)
    finally:
        if users_full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = users_full_error


if __name__ == "__main__":
    main()
