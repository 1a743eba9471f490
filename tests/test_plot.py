"""Figures: numeric legend order, seeds pooled into mean and s.d., a distribution a 100-arm bandit can see,
faceted log-prob panels, markers on short runs, bands inside the reward's range."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

from alignlab.plots import plot  # noqa: E402
from alignlab.plots.plot import _draw_distribution, _marker, load_sweep, natural_key, plot_sweep  # noqa: E402


def fake_run(
    root, name: str, overrides: list[str], rewards: list[float], logps: bool = True, finished: bool = True
) -> None:
    """A run directory as the CLI writes one: its algorithm and regime are read from .hydra/config.yaml."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    given = dict(o.split("=", 1) for o in overrides)
    sync = {"online": 1, "offline": None, "semi_online": 4}[given.get("sampling", "online")]
    config = {"algo": {"name": given.get("algo", "dpo")}, "sampling": {"sync_every": sync}}
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    frame = pd.DataFrame({"iteration": range(len(rewards)), "eval/reward": rewards, "eval/kl_ref": rewards})
    if logps:
        frame["logps/chosen"], frame["logps/rejected"], frame["logps/margin"] = -1.0, -2.0, 1.0
    frame.to_csv(run / "metrics.csv", index=False)
    if finished:
        (run / "summary.json").write_text('{"reward": 0.5}')


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
    assert set(data["label"]) == {"DPO, online"}
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
    assert sorted(set(data["label"]), key=natural_key) == ["DPO, online, T=1", "DPO, online, T=2", "DPO, online, T=16"]


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


# ---- every figure the report writes: panels with data, readable labels, one colour per algorithm ------------
def capture(monkeypatch) -> dict:
    """The figures plot_sweep saves, by file name, kept open for inspection."""
    figures = {}

    def keep(fig, path):
        figures[path.name] = fig
        fig.savefig(path, dpi=40)
        return path

    monkeypatch.setattr(plot, "_save", keep)
    return figures


def report_like_sweep(root) -> None:
    """A T1-like sweep (reward x regime x algorithm, 2 seeds; only the preference objectives log log-probs) and
    run-control overrides that must not leak into any title."""
    for reward in ("hard", "easy"):
        for sampling in ("online", "offline"):
            for algo in ("dpo", "reinforce"):
                for seed in (0, 1):
                    overrides = [f"task.reward={reward}", f"sampling={sampling}", f"algo={algo}", f"seed={seed}"]
                    overrides += ["train.progress=false", "experiment=online_vs_offline"]
                    rewards = [0.1, 0.3 + 0.1 * seed, 0.6 if sampling == "online" else 0.4]
                    fake_run(root, f"{reward}-{sampling}-{algo}-{seed}", overrides, rewards, logps=algo == "dpo")
    (root / "multirun.yaml").write_text(
        yaml.safe_dump({"hydra": {"sweeper": {"params": {"algo": "reinforce,dpo", "sampling": "online,offline"}}}})
    )


def test_every_figure_has_data_in_every_panel_and_readable_labels(tmp_path, monkeypatch):
    report_like_sweep(tmp_path / "sweep")
    figures = capture(monkeypatch)
    plot_sweep(tmp_path / "sweep", tmp_path / "out")
    assert set(figures) == {"reward_vs_iteration.png", "reward_vs_kl.png", "logps.png"}
    colours = {}
    for name, fig in figures.items():
        texts = [fig._suptitle.get_text() if fig._suptitle else ""]
        for ax in fig.axes:
            lines = [line for line in ax.get_lines() if len(line.get_xdata())]
            assert lines, f"{name}: an empty panel ({ax.get_title()!r})"
            texts.append(ax.get_title())
            for line in lines:
                label = line.get_label()
                if label.startswith(("DPO", "REINFORCE")):
                    colours.setdefault(label.split(",")[0], set()).add(line.get_color() if isinstance(
                        line.get_color(), str) else tuple(round(c, 4) for c in line.get_color()))  # fmt: skip
                    assert line.get_linestyle() == ("-" if ", online" in label else "--"), (name, label)
        legend = [t.get_text() for lg in fig.legends for t in lg.get_texts()]
        texts += legend
        assert legend and not any(raw in t for t in texts for raw in ("algo=", "sampling=", "train.progress", "seed="))
        if name != "logps.png":
            assert legend == ["REINFORCE, online", "REINFORCE, offline", "DPO, online", "DPO, offline"], name
    assert len(figures["logps.png"].axes) == 4  # DPO's four configurations; REINFORCE logs no log-probs
    assert all(len(c) == 1 for c in colours.values()) and colours["DPO"] != colours["REINFORCE"]
    for fig in figures.values():
        plt.close(fig)


def test_the_frontier_is_the_verdicts_mean_over_seeds_with_an_interval(tmp_path):
    report_like_sweep(tmp_path)
    fronts = plot.kl_frontiers(load_sweep(tmp_path))
    top = fronts[(fronts["task.reward"] == "hard") & (fronts.algo == "dpo") & (fronts.regime == "online")].iloc[-1]
    assert top["mean"] == pytest.approx(0.6) and top["low"] <= 0.6 <= top["high"]  # both seeds end at 0.6
    mid = fronts[(fronts["task.reward"] == "hard") & (fronts.algo == "dpo") & (fronts.regime == "offline")]
    at_035 = mid[(mid.kl >= 0.35) & (mid.kl < 0.4)].iloc[0]  # seed 0's best within 0.35 is 0.3, seed 1's is 0.1
    assert at_035["mean"] == pytest.approx(0.2) and at_035["low"] == pytest.approx(0.1)


def test_final_csv_marks_unfinished_runs_and_averages_only_finished_ones(tmp_path):
    fake_run(tmp_path, "a", ["algo=dpo", "seed=0"], [0.1, 0.5])
    fake_run(tmp_path, "b", ["algo=dpo", "seed=1"], [0.1, 0.9], finished=False)
    plot_sweep(tmp_path)
    final = pd.read_csv(tmp_path / "final.csv", header=[0, 1], index_col=0)
    row = final.loc["DPO, online"]
    assert row[("runs", "Unnamed: 1_level_1")] == 1 and row[("unfinished", "Unnamed: 2_level_1")] == 1
    assert row[("eval/reward", "mean")] == pytest.approx(0.5)
    assert "| DPO, online | 1 | 1 | 0.500" in (tmp_path / "final.md").read_text()


def test_out_is_honoured_for_one_run(tmp_path, capsys):
    fake_run(tmp_path, "run", ["algo=dpo", "train.progress=false"], [0.1, 0.5])
    plot.main([str(tmp_path / "run"), "--out", str(tmp_path / "elsewhere")])
    assert capsys.readouterr().out.strip() == str(tmp_path / "elsewhere" / "figure.png")
    assert (tmp_path / "elsewhere" / "figure.png").exists() and not (tmp_path / "run" / "figure.png").exists()


# issue 15/19: report and plots. A damaged metrics.csv: a row each, the file's bytes and the words of the one line.
PLOT_BAD_INPUT = [
    (b"", "is not a metrics table (EmptyDataError)"),
    (b"iteration,eval/reward\n", "has no rows (or no iteration column)"),
    (bytes(range(256)) * 4, "is not a metrics table"),
]


@pytest.mark.parametrize("content, words", PLOT_BAD_INPUT)
@pytest.mark.parametrize("shape", ["run", "sweep"])
def test_a_damaged_metrics_csv_is_one_line(tmp_path, content, words, shape):
    fake_run(tmp_path, "good", ["algo=dpo", "seed=0"], [0.1, 0.5])
    fake_run(tmp_path, "bad", ["algo=dpo", "seed=1"], [0.1, 0.5])
    (tmp_path / "bad" / "metrics.csv").write_bytes(content)
    with pytest.raises(SystemExit) as stop:
        plot.main([str(tmp_path / "bad" if shape == "run" else tmp_path)])
    line = str(stop.value)
    assert "\n" not in line and words in line and str(tmp_path / "bad" / "metrics.csv") in line and "Fix:" in line
