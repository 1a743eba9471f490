"""Tuning per objective: the Optuna sweeper's search space, a trial's score over seeds, the tuned-settings file,
and its bad uses."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf, open_dict

from alignlab.errors import ConfigError
from alignlab.runs.api import compose_config
from alignlab.runs.tuned import apply_tuned

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
    "asked, file_reward",
    [("hard", "r1"), ("r1", "r1"), ("r1", "hard"), ("hard", "hard")],
    ids=["role-run-name-file", "name-run-name-file", "name-run-role-file", "role-run-role-file"],
)
def test_a_reward_role_and_its_name_take_the_same_tuned_file(asked, file_reward):
    cfg = apply_tuned(with_tuned({**SETTINGS, "reward": file_reward}, "algo=dpo", f"task.reward={asked}"))
    assert cfg.train.lr == 0.2 and cfg.algo.beta == 0.5


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
        (
            ["task.reward=easy"],
            {},
            "was tuned for task=bandit task.reward=r1 sampling=online, not for task=bandit task.reward=easy (r2) "
            "sampling=online. Fix: tune this setting with `alignlab-tune task=bandit task.reward=easy sampling=online`",
        ),
        (["task.reward=r2"], {"reward": "hard"}, "was tuned for task=bandit task.reward=r1 sampling=online, not for"),
        (["task=bandit_tajwar100", "task.reward=hard"], {}, "not for task=bandit_tajwar100"),
        (["task=bandit_tajwar100"], {}, "not for task=bandit_tajwar100"),
        (["algo=ipo"], {}, "has no settings for algo=ipo (it has dpo). Fix: tune it with `alignlab-tune task=bandit"),
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


def test_the_cli_takes_a_tuned_file_by_the_role_of_its_reward(cli):
    """bandit_r1_online under task.reward=hard: the bandit's hard role is r1, so the run takes DPO's tuned lr."""
    ran = cli(*FAST, "tuned=bandit_r1_online", "task.reward=hard", "algo=dpo", "hydra.run.dir=run")
    assert "bandit / dpo / online" in ran.stdout
    config = OmegaConf.load(cli.dir / "run" / ".hydra" / "config.yaml")
    assert config.tuned.reward == "r1" and config.task.reward == "hard"


def test_the_cli_refuses_a_tuned_file_for_another_reward(cli):
    proc = cli(*FAST, "tuned=bandit_r1_online", "task.reward=easy", check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "was tuned for" in proc.stderr and "task.reward=easy (r2)" in proc.stderr and "Fix: " in proc.stderr


# Two trials of five seeds: "bold" is best on average and at the lower quartile, "steady" on its worst seed.
TRIALS = {"bold": [1.0, 1.0, 1.0, 1.0, 0.9], "steady": [0.95, 0.96, 0.97, 0.95, 0.95]}


@pytest.mark.parametrize(
    "aggregate, quantile, best, scores",
    [
        ("mean", 0.25, "bold", {"bold": 0.98, "steady": 0.956}),
        ("min", 0.25, "steady", {"bold": 0.9, "steady": 0.95}),
        ("quantile", 0.0, "steady", {"bold": 0.9, "steady": 0.95}),
        ("quantile", 0.25, "bold", {"bold": 1.0, "steady": 0.95}),
        ("quantile", 0.1, "steady", {"bold": 0.94, "steady": 0.95}),
    ],
)
def test_a_trial_is_scored_by_the_mean_the_worst_seed_or_a_quantile(aggregate, quantile, best, scores):
    from alignlab.science.tune import trial_score

    got = {name: trial_score(values, aggregate, quantile) for name, values in TRIALS.items()}
    assert got == pytest.approx(scores)
    assert max(got, key=got.get) == best


def test_the_quantile_interpolates_between_the_seeds_order_statistics():
    from alignlab.science.tune import trial_score

    values = [0.5, 0.1, 0.4, 0.2, 0.3]
    got = [trial_score(values, "quantile", q) for q in (0.0, 0.1, 0.25, 0.5, 0.9, 1.0)]
    assert got == pytest.approx([0.1, 0.14, 0.2, 0.3, 0.46, 0.5])
    assert trial_score([0.7], "min") == trial_score([0.7], "quantile", 0.3) == 0.7


@pytest.mark.parametrize(
    "aggregate, quantile, message",
    [
        ("max", 0.25, "tune.aggregate=max is not one of mean, min, quantile. Fix: set tune.aggregate=min"),
        ("quantile", 1.5, "tune.quantile=1.5 is outside [0, 1]. Fix: set tune.quantile=0.25"),
        ("quantile", -0.1, "tune.quantile=-0.1 is outside [0, 1]"),
    ],
)
def test_a_bad_score_setting_stops_in_one_line(aggregate, quantile, message):
    from alignlab.science.tune import ObjectiveValue, trial_score

    for bad in (lambda: trial_score([1.0], aggregate, quantile), lambda: ObjectiveValue("reward", aggregate, quantile)):
        with pytest.raises(ConfigError) as error:
            bad()
        assert message in str(error.value) and "\n" not in str(error.value)


def test_alignlab_tune_refuses_a_bad_aggregate_before_it_tunes(cli):
    proc = cli("--algos", "dpo", "tune.aggregate=worst", module="alignlab.science.tune", check=False)
    assert proc.returncode != 0 and "tune.aggregate=worst is not one of mean, min, quantile" in proc.stderr
    assert not (cli.dir / "multirun").exists()


def test_alignlab_tune_refuses_to_mix_two_scores_in_one_file(cli):
    """Tuning one objective into a file whose others were scored by the mean of 3 seeds stops before it tunes."""
    out = cli.dir / "old.yaml"
    out.write_text(json.dumps({**SETTINGS, "seeds": 3, "best_reward": {"dpo": 0.99}}))
    proc = cli("--algos", "sft", "--out", str(out), module="alignlab.science.tune", check=False)
    assert proc.returncode != 0 and "Fix: tune every objective (drop --algos), or choose --out" in proc.stderr
    assert "holds settings scored by the mean of 3 seeds, not by the min (worst seed) over 5 seeds" in proc.stderr
    assert not (cli.dir / "multirun").exists()


@pytest.mark.parametrize("aggregate, expected", [("mean", 0.98), ("min", 0.9), ("quantile", 1.0)])
def test_the_sweeper_receives_the_score_of_the_seeds_summaries(tmp_path, aggregate, expected):
    """The callback reads each seed's seed=K/summary.json of a num_seeds job, not the job's mean."""
    from alignlab.science.tune import ObjectiveValue

    for seed, reward in zip(range(10, 15), TRIALS["bold"], strict=True):
        (tmp_path / f"seed={seed}").mkdir()
        (tmp_path / f"seed={seed}" / "summary.json").write_text(json.dumps({"reward": reward, "seed": seed}))
    job = SimpleNamespace(_return_value={"reward": 0.98, "seeds": list(range(10, 15)), "num_seeds": 5})
    config = OmegaConf.create({"hydra": {"runtime": {"output_dir": str(tmp_path)}}})
    ObjectiveValue("reward", aggregate, 0.25).on_job_end(config, job)
    assert job.return_value == pytest.approx(expected)
    single = SimpleNamespace(_return_value={"reward": 0.3, "seed": 0})  # num_seeds=1: the run's own summary
    ObjectiveValue("reward", aggregate).on_job_end(config, single)
    assert single.return_value == pytest.approx(0.3)


@pytest.mark.parametrize(
    "algo, keys", [("dpo", {"algo.beta"}), ("ipo", {"algo.tau"}), ("ppo", {"algo.clip_epsilon"}), ("sft", set())]
)
def test_the_search_space_adds_the_objectives_own_setting(algo, keys):
    optuna = pytest.importorskip("optuna")
    from alignlab.science.tune import search_space

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
    budget = ["train.iterations=10", "num_seeds=2", "hydra.sweeper.n_trials=2", "tune.aggregate=min"]
    proc = cli("--algos", "dpo,sft", "--out", str(out), "task.reward=hard", *budget, module="alignlab.science.tune")
    assert "2 objectives tuned" in proc.stdout
    tuned = OmegaConf.load(out)
    assert (tuned.name, tuned.task, tuned.reward, tuned.sampling) == ("bandit_r1_online", "bandit", "r1", "online")
    assert (tuned.trials, tuned.seeds) == (2, 2)
    assert tuned.score == "the min (worst seed) over 2 seeds of the final reward"
    assert set(tuned.settings.dpo) == {"train.lr", "algo.beta"} and set(tuned.settings.sft) == {"train.lr"}
    assert 0.003 <= tuned.settings.dpo["train.lr"] <= 1.0
    for algo in ("dpo", "sft"):  # the best score is the best trial's worst seed (2 seeds: not its mean)
        trials = [p for p in (cli.dir / "multirun" / "tune" / "bandit_hard_online" / algo).iterdir() if p.is_dir()]
        worst = [min(OmegaConf.load(s).reward for s in p.glob("seed=*/summary.json")) for p in trials]
        assert len(trials) == 2 and tuned.best_score[algo] == pytest.approx(max(worst), abs=1e-6)
    run = cli(*FAST, f"hydra.searchpath=[file://{cli.dir / 'conf'}]", "tuned=mine", "algo=dpo", "hydra.run.dir=run")
    assert "bandit / dpo / online" in run.stdout
    config = OmegaConf.load(cli.dir / "run" / ".hydra" / "config.yaml")
    assert config.tuned.settings.dpo["train.lr"] == tuned.settings.dpo["train.lr"]
