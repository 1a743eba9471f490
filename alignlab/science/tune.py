"""Tuning each objective's own settings, with Hydra's Optuna sweeper (a fair comparison, as Tajwar et al. tuned
every algorithm's learning rate and beta before comparing them).

One objective:   alignlab -m experiment=tune algo=dpo task.reward=r1 sampling=online
Every objective: alignlab-tune task.reward=r1 sampling=online      (writes conf/tuned/bandit_r1_online.yaml)
Then:            alignlab algo=dpo task.reward=r1 sampling=online tuned=bandit_r1_online

`experiment=tune` (conf/experiment/tune.yaml) searches `train.lr` and the objective's own setting (its beta, tau
or clip range: the table `tune.knobs` there) with Optuna's TPE sampler, each trial being `num_seeds` runs, and
maximises one score per trial: `tune.aggregate` of the seeds' final `tune.metric` (`mean`, `min`: the worst
seed, or `quantile`: the `tune.quantile` quantile). `alignlab-tune` runs that sweep for every objective (`jobs`
at a time) and gathers each one's best settings into one tuned-settings file.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from alignlab.core.roles import resolve_reward
from alignlab.errors import ConfigError
from alignlab.runs.tuned import tuned_name

RESULTS = "optimization_results.yaml"
AGGREGATES = ("mean", "min", "quantile")


def search_space(cfg: DictConfig, trial) -> None:
    """The Optuna sweeper's custom search space: the objective's own setting, from `tune.knobs[algo]`."""
    for key, space in (cfg.tune.knobs.get(cfg.algo.name) or {}).items():
        trial.suggest_float(key, space.low, space.high, log=space.get("log", False))


def check_aggregate(aggregate: str, quantile: float) -> None:
    if aggregate not in AGGREGATES:
        raise ConfigError(f"tune.aggregate={aggregate} is not one of {', '.join(AGGREGATES)}", "set tune.aggregate=min")
    if aggregate == "quantile" and not 0.0 <= float(quantile) <= 1.0:
        raise ConfigError(f"tune.quantile={quantile} is outside [0, 1]", "set tune.quantile=0.25")


def trial_score(values: list[float], aggregate: str, quantile: float = 0.25) -> float:
    """One trial's score from its seeds' final values: their mean, their minimum (the worst seed), or their
    `quantile` quantile (linear interpolation between order statistics; 0 is the minimum, 0.5 the median)."""
    check_aggregate(aggregate, quantile)
    ordered = sorted(float(v) for v in values)
    if aggregate == "mean":
        return sum(ordered) / len(ordered)
    if aggregate == "min":
        return ordered[0]
    position = float(quantile) * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


def seed_values(summary: dict, run_dir: Path, metric: str) -> list[float]:
    """Each seed's final `metric`: a `num_seeds` job's seed=K/summary.json files, or a single run's summary."""
    if "num_seeds" not in summary:
        return [float(summary[metric])]
    return [float(json.loads((run_dir / f"seed={s}" / "summary.json").read_text())[metric]) for s in summary["seeds"]]


class ObjectiveValue(Callback):
    """Hand the sweeper one number per job: `aggregate` over the seeds of each seed's summary[`metric`]."""

    def __init__(self, metric: str = "reward", aggregate: str = "mean", quantile: float = 0.25):
        check_aggregate(aggregate, quantile)
        self.metric, self.aggregate, self.quantile = metric, aggregate, float(quantile)

    def on_job_end(self, config: DictConfig, job_return, **kwargs) -> None:
        summary = getattr(job_return, "_return_value", None)
        if isinstance(summary, dict):
            values = seed_values(summary, Path(config.hydra.runtime.output_dir), self.metric)
            job_return.return_value = trial_score(values, self.aggregate, self.quantile)


def score_words(cfg: DictConfig) -> str:
    """How a trial is scored, in words: 'the min over 5 seeds of the final reward'."""
    what = {"mean": "mean", "min": "min (worst seed)", "quantile": f"{cfg.tune.quantile} quantile"}
    return f"the {what[cfg.tune.aggregate]} over {cfg.num_seeds} seeds of the final {cfg.tune.metric}"


def all_objectives() -> list[str]:
    folder = importlib.resources.files("alignlab.conf") / "algo"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def tuned_dir() -> Path:
    return Path(str(importlib.resources.files("alignlab.conf") / "tuned"))


def tune_one(algo: str, overrides: list[str], log_dir: Path) -> tuple[str, dict, float, float]:
    """One objective's Optuna sweep, in its own process: (algo, best settings, best value, seconds)."""
    from alignlab.runs.api import compose_config

    started = time.perf_counter()
    command = [sys.executable, "-m", "alignlab", "-m", "experiment=tune", f"algo={algo}", *overrides]
    log = log_dir / f"{algo}.log"
    with open(log, "w") as f:
        proc = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"alignlab-tune: the sweep of algo={algo} failed; see {log}. Command: {' '.join(command)}")
    cfg = compose_config("experiment=tune", f"algo={algo}", *overrides)
    results = OmegaConf.load(Path(cfg.hydra.sweep.dir) / RESULTS)
    return algo, dict(results.best_params), float(results.best_value), time.perf_counter() - started


def tune(argv: list[str] | None = None) -> Path:
    """`alignlab-tune`: tune every objective and write the tuned-settings file; returns its path."""
    parser = argparse.ArgumentParser(prog="alignlab-tune", description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="alignlab overrides: task=..., task.reward=..., sampling=...")
    parser.add_argument("--algos", default=None, help="comma-separated objectives (default: all of conf/algo)")
    parser.add_argument("--jobs", type=int, default=2, help="objectives tuned at the same time (processes)")
    parser.add_argument("--out", type=Path, default=None, help="the tuned-settings file (default: conf/tuned/...)")
    args = parser.parse_args(argv)
    from alignlab.runs.api import compose_config

    algos = args.algos.split(",") if args.algos else all_objectives()
    cfg = compose_config("experiment=tune", f"algo={algos[0]}", *args.overrides)
    try:
        check_aggregate(cfg.tune.aggregate, cfg.tune.quantile)
    except ConfigError as error:
        raise SystemExit(f"alignlab-tune: {error}") from None
    reward = resolve_reward(OmegaConf.to_container(cfg.task))["reward"]  # a role (hard) is saved as its name (r1)
    name = tuned_name(cfg.task.name, reward, cfg.sampling.name)
    out = args.out or tuned_dir() / f"{name}.yaml"
    earlier = OmegaConf.load(out) if out.exists() else None
    here = (cfg.task.name, reward, cfg.sampling.name)
    if earlier is not None and (earlier.task, earlier.reward, earlier.sampling) != here:
        raise SystemExit(f"alignlab-tune: {out} holds settings for another setting. Fix: choose --out.")
    if earlier is not None and earlier.get("score") != score_words(cfg):
        if args.algos:  # a file of one score only: settings scored two ways would not compare
            scored = earlier.get("score", f"the mean of {earlier.get('seeds')} seeds")
            raise SystemExit(
                f"alignlab-tune: {out} holds settings scored by {scored}, "
                f"not by {score_words(cfg)}. Fix: tune every objective (drop --algos), or choose --out."
            )
        earlier = None  # every objective is tuned again: the file is replaced
    log_dir = Path(cfg.hydra.sweep.dir).parent / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(lambda a: tune_one(a, args.overrides, log_dir), algos))
    seconds = time.perf_counter() - started

    tuned = OmegaConf.create(
        {
            "name": name,
            "task": cfg.task.name,
            "reward": reward,
            "sampling": cfg.sampling.name,
            "trials": int(cfg.hydra.sweeper.n_trials),
            "seeds": int(cfg.num_seeds),
            "iterations": int(cfg.train.iterations),
            "score": score_words(cfg),
            "settings": earlier.settings if earlier is not None else {},
            "best_score": earlier.best_score if earlier is not None else {},
        }
    )
    for algo, best, value, _ in results:
        tuned.settings[algo] = best
        tuned.best_score[algo] = round(value, 6)
    header = (
        "# @package tuned\n"
        f"# Written by alignlab-tune {' '.join(args.overrides)}: for each objective the best of "
        f"{tuned.trials} Optuna (TPE) trials,\n# each trial scored by {tuned.score}. "
        f"Use: alignlab algo=dpo tuned={name} task.reward={reward} sampling={cfg.sampling.name}\n"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + OmegaConf.to_yaml(tuned, sort_keys=False))
    for algo, best, value, secs in results:
        print(f"alignlab-tune: {algo}: best score {value:.4f} with {best} ({secs:.0f} s)")
    print(f"alignlab-tune: {len(algos)} objectives tuned in {seconds:.0f} s -> {out}")
    return out


def main() -> None:
    tune()


if __name__ == "__main__":
    main()
