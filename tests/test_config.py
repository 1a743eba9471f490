"""Every option of every config group composes; every algo and task instantiates; required values are ???."""

import importlib.resources

import pytest
from hydra import compose
from hydra.utils import instantiate
from omegaconf import OmegaConf

from alignlab.core.roles import resolve_reward
from alignlab.core.sampling import SamplingConfig
from alignlab.core.train import TrainConfig

CONF = importlib.resources.files("alignlab.conf")


def options(group: str) -> list[str]:
    return sorted(p.name[:-5] for p in (CONF / group).iterdir() if p.name.endswith(".yaml"))


def test_the_groups_of_the_design_exist():
    for group in ("task", "algo", "sampling", "experiment", "hydra/launcher"):
        assert options(group), group
    assert set(options("sampling")) == {"offline", "online", "semi_online"}
    assert {"bandit", "bandit_tajwar100"} <= set(options("task"))
    assert set(options("algo")) >= {
        "sft",
        "best_of_n",
        "best_of_n_neg_worst",
        "best_of_n_neg_worse",
        "raft",
        "rest",
        "rwr",
        "superhf",
        "reinforce",
        "rloo",
        "grpo",
        "ppo",
        "dpo",
        "ipo",
        "kto",
        "cpo",
    }


def test_required_values_are_marked_missing(hydra_ctx):
    root = OmegaConf.load(CONF / "config.yaml")
    assert OmegaConf.is_missing(root.train, "lr") and OmegaConf.is_missing(root.train, "iterations")


@pytest.mark.parametrize("algo", options("algo"))
def test_every_algo_composes_and_instantiates(hydra_ctx, algo):
    cfg = compose("config", overrides=[f"algo={algo}"])
    assert cfg.algo.name == algo
    header = (CONF / "algo" / f"{algo}.yaml").read_text().splitlines()[0]
    assert "arXiv" in (CONF / "algo" / f"{algo}.yaml").read_text() or "Peters" in header, "header names the paper"
    assert "alignlab " in (CONF / "algo" / f"{algo}.yaml").read_text(), "header gives a command"
    algo_cfg = OmegaConf.to_container(cfg.algo, resolve=True)
    algo_cfg.pop("name")
    objective = instantiate(algo_cfg)
    objective.check(SamplingConfig(**cfg.sampling).samples_per_prompt)


@pytest.mark.parametrize("sampling", options("sampling"))
def test_every_sampling_regime_composes(hydra_ctx, sampling):
    cfg = compose("config", overrides=[f"sampling={sampling}"])
    SamplingConfig(**cfg.sampling).check()


@pytest.mark.parametrize("task", options("task"))
def test_every_task_composes_and_sets_the_required_values(hydra_ctx, task):
    cfg = compose("config", overrides=[f"task={task}"])
    TrainConfig(**OmegaConf.to_container(cfg.train, resolve=True)).check()
    assert cfg.task.name


@pytest.mark.parametrize("task", ["bandit", "bandit_tajwar100"])
def test_bandit_tasks_instantiate(hydra_ctx, task):
    cfg = compose("config", overrides=[f"task={task}"])
    instantiate(resolve_reward(OmegaConf.to_container(cfg.task, resolve=True)))


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes(hydra_ctx, experiment):
    cfg = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    assert cfg.experiment_name == experiment
    assert cfg.hydra.sweeper.params, "an experiment file is a sweep"
    for value in cfg.hydra.sweeper.params.values():
        assert value is not None


@pytest.mark.parametrize("launcher", options("hydra/launcher") + ["joblib", "basic"])
def test_every_launcher_composes(hydra_ctx, launcher):
    cfg = compose("config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_


def test_every_algo_composes_with_every_regime(hydra_ctx):
    for sampling in options("sampling"):
        for algo in options("algo"):
            cfg = compose("config", overrides=[f"sampling={sampling}", f"algo={algo}"])
            assert cfg.algo.name == algo and cfg.sampling.name == sampling
