"""Tuning per objective: the Optuna sweeper's search space, the tuned-settings file, and its bad uses."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from alignlab.api import compose_config
from alignlab.errors import ConfigError
from alignlab.tuning import apply_tuned

TUNED = Path(__file__).resolve().parents[1] / "conf" / "tuned"
FAST = ["train.iterations=10", "train.progress=false", "plot=false"]


def with_tuned(tuned: dict, *overrides: str):
    cfg = compose_config(*overrides)
    with open_dict(cfg):
        cfg.tuned = tuned
    return cfg


SETTINGS = {
    "task": "bandit",
    "reward": "r1",
    "sampling": "online",
    "settings": {"dpo": {"train.lr": 0.2, "algo.beta": 0.5}},
}


def test_tuned_settings_replace_the_defaults_of_their_objective():
    cfg = apply_tuned(with_tuned(SETTINGS, "algo=dpo"))
    assert cfg.train.lr == 0.2 and cfg.algo.beta == 0.5 and cfg.task.optimum_beta == 0.5


@pytest.mark.parametrize(
    "overrides, settings, message",
    [
        (
            ["task.reward=r2"],
            {},
            "tuned=bandit_r1_online was tuned for task=bandit task.reward=r1 sampling=online, "
            "not for task=bandit task.reward=r2 sampling=online. Fix: tune this setting with `alignlab-tune",
        ),
        (["sampling=offline"], {}, "not for task=bandit task.reward=r1 sampling=offline"),
        (["task=bandit_tajwar100"], {}, "not for task=bandit_tajwar100"),
        (["algo=ipo"], {}, "tuned=bandit_r1_online has no settings for algo=ipo (it has dpo). Fix: tune it with"),
        (["algo=dpo"], {"settings": {"dpo": {"algo.tau": 1.0}}}, "sets algo.tau, which algo=dpo does not have"),
    ],
)
def test_a_tuned_file_for_another_setting_stops_in_one_line(overrides, settings, message):
    cfg = with_tuned({**SETTINGS, **settings}, *overrides)
    with pytest.raises(ConfigError, match="Fix: ") as error:
        apply_tuned(cfg)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("path", sorted(TUNED.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_committed_tuned_file_applies_to_each_of_its_objectives(path):
    tuned = OmegaConf.load(path)
    for algo, settings in tuned.settings.items():
        cfg = compose_config(
            f"tuned={path.stem}",
            f"algo={algo}",
            f"task={tuned.task}",
            f"task.reward={tuned.reward}",
            f"sampling={tuned.sampling}",
        )
        cfg = apply_tuned(cfg)
        for key, value in settings.items():
            assert OmegaConf.select(cfg, key) == value


@pytest.mark.parametrize(
    "algo, keys", [("dpo", {"algo.beta"}), ("ipo", {"algo.tau"}), ("ppo", {"algo.clip_epsilon"}), ("sft", set())]
)
def test_the_search_space_adds_the_objectives_own_setting(algo, keys):
    optuna = pytest.importorskip("optuna")
    from alignlab.tune import search_space

    cfg = compose_config("experiment=tune", f"algo={algo}")
    trial = optuna.create_study(direction="maximize").ask()
    search_space(cfg, trial)
    assert set(trial.params) == keys
    for key in keys:
        space = cfg.tune.knobs[algo][key]
        assert space.low <= trial.params[key] <= space.high


@pytest.mark.slow
def test_alignlab_tune_writes_a_file_that_a_run_can_use(cli, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    out = cli.dir / "conf" / "tuned" / "mine.yaml"
    budget = ["train.iterations=10", "num_seeds=1", "hydra.sweeper.n_trials=2"]
    proc = cli("--algos", "dpo,sft", "--out", str(out), *budget, module="alignlab.tune")
    assert "2 objectives tuned" in proc.stdout
    tuned = OmegaConf.load(out)
    assert (tuned.task, tuned.reward, tuned.sampling, tuned.trials, tuned.seeds) == ("bandit", "r1", "online", 2, 1)
    assert set(tuned.settings.dpo) == {"train.lr", "algo.beta"} and set(tuned.settings.sft) == {"train.lr"}
    assert 0.003 <= tuned.settings.dpo["train.lr"] <= 1.0
    for algo in ("dpo", "sft"):  # the best value is the mean final reward of the trial with these settings
        trial = [p for p in (cli.dir / "multirun" / "tune" / "bandit_r1_online" / algo).iterdir() if p.is_dir()]
        rewards = [OmegaConf.load(p / "summary.json").reward for p in trial]
        assert tuned.best_reward[algo] == pytest.approx(max(rewards), abs=1e-6)
    run = cli(*FAST, f"hydra.searchpath=[file://{cli.dir / 'conf'}]", "tuned=mine", "algo=dpo", "hydra.run.dir=run")
    assert "bandit / dpo / online" in run.stdout
    config = OmegaConf.load(cli.dir / "run" / ".hydra" / "config.yaml")
    assert config.tuned.settings.dpo["train.lr"] == tuned.settings.dpo["train.lr"]
