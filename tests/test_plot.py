"""Figures: numeric legend order, seeds pooled into mean and s.d., a distribution a 100-arm bandit can see,
faceted log-prob panels, markers on short runs, bands inside the reward's range."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

from alignlab.plots.plot import _draw_distribution, _marker, load_sweep, natural_key, plot_sweep  # noqa: E402


def fake_run(root, name: str, overrides: list[str], rewards: list[float], logps: bool = True) -> None:
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    frame = pd.DataFrame({"iteration": range(len(rewards)), "eval/reward": rewards, "eval/kl_ref": rewards})
    if logps:
        frame["logps/chosen"], frame["logps/rejected"], frame["logps/margin"] = -1.0, -2.0, 1.0
    frame.to_csv(run / "metrics.csv", index=False)


def test_labels_sort_by_number_not_by_text():
    labels = ["T=16", "T=2", "T=32", "T=1", "T=4", "beta=0.03", "beta=0.3", "s=null", "s=64"]
    assert sorted(labels, key=natural_key) == [
        "T=1",
        "T=2",
        "T=4",
        "T=16",
        "T=32",
        "beta=0.03",
        "beta=0.3",
        "s=64",
        "s=null",
    ]


def test_seeds_of_one_configuration_are_pooled_into_one_curve(tmp_path):
    for seed in range(3):
        fake_run(tmp_path, f"seed={seed}", ["algo=dpo", f"seed={seed}"], [0.1, 0.5 + 0.1 * seed])
    data = load_sweep(tmp_path)
    assert set(data["label"]) == {"mean over seeds"}
    paths = plot_sweep(tmp_path)
    assert {p.name for p in paths} >= {"reward_vs_iteration.png", "reward_vs_kl.png", "logps.png", "final.csv"}


def test_a_sweep_over_several_settings_is_faceted_and_its_legend_is_numeric(tmp_path):
    for reward in ("hard", "easy"):
        for t in (1, 16, 2):
            overrides = [f"task.reward={reward}", f"sampling.updates_per_batch={t}", "seed=0"]
            fake_run(tmp_path, f"{reward}-{t}", overrides, [0.0, 0.5, 1.0])
    plot_sweep(tmp_path)
    figures = [plt.figure(n) for n in plt.get_fignums()]
    assert not figures, "every figure is closed after saving"
    data = load_sweep(tmp_path)
    assert data.attrs["varying"] == ["sampling.updates_per_batch", "task.reward"]


def test_a_100_arm_distribution_is_drawn_as_lines_that_reach_the_policys_peak():
    arms = range(100)
    dist = pd.DataFrame(
        {
            "completion": arms,
            "reward": [1.0 if a == 70 else 0.0 for a in arms],
            "reference": [0.01] * 100,
            "policy": [0.9985 if a == 70 else 0.0015 / 99 for a in arms],
            "optimum": [0.01] * 100,
        }
    )
    fig, ax = plt.subplots()
    _draw_distribution(ax, dist)
    peaks = [max(line.get_ydata()) for line in ax.lines]
    assert pytest.approx(0.9985) in peaks and ax.get_ylim()[1] >= 0.9985
    plt.close(fig)


def test_short_curves_get_markers():
    assert _marker(2) == "o" and _marker(15) == "o" and _marker(300) is None
