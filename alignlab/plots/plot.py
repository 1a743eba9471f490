"""`alignlab-plot DIR`: seaborn figures from a run or a multirun directory.

- a run (a directory with metrics.csv): figure.png with reward, KL to the reference, chosen / rejected
  log-probs, and the final distribution over completions when the task wrote distribution.csv;
- a sweep (any directory above several runs): reward_vs_iteration.png (mean and a band of one standard
  deviation across seeds), reward_vs_kl.png, logps.png, and final.csv / final.md (final metrics per
  configuration, mean and standard deviation across seeds).
Runs are labelled by the overrides that differ between them, seed excepted.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import yaml  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from alignlab.storage.rundir import METRICS  # noqa: E402

LOGPS = ("logps/chosen", "logps/rejected", "logps/margin")
logging.getLogger("matplotlib.category").setLevel(logging.ERROR)  # arm ids are categories on purpose


def plot_run(run_dir: Path) -> Path:
    """figure.png for one run directory."""
    run_dir = Path(run_dir)
    metrics = pd.read_csv(run_dir / METRICS)
    distribution = run_dir / "distribution.csv"
    panels = [("eval/reward", "expected reward"), ("eval/kl_ref", "KL(pi || pi_ref)")]
    has_logps = all(c in metrics for c in LOGPS[:2])
    count = len(panels) + has_logps + distribution.exists()
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(1, count, figsize=(4.2 * count, 3.6))
    for ax, (column, title) in zip(axes, panels, strict=False):
        data = metrics.dropna(subset=[column])
        ax.plot(data["iteration"], data[column], marker=_marker(len(data)), ms=4)
        ax.set(title=title, xlabel="iteration", ylabel="")
    index = len(panels)
    if has_logps:
        ax = axes[index]
        for column, style in zip(LOGPS, ("-", "--", ":"), strict=True):
            if column in metrics:
                data = metrics.dropna(subset=[column])
                ax.plot(data["iteration"], data[column], ls=style, marker=_marker(len(data)), ms=3, label=column[6:])
        ax.set(title="policy log-probs of chosen / rejected", xlabel="iteration")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, frameon=False)
        index += 1
    if distribution.exists():
        _draw_distribution(axes[index], pd.read_csv(distribution))
    fig.suptitle(" ".join(_overrides(run_dir)) or "defaults (alignlab with no overrides)", fontsize=10)
    fig.tight_layout()
    out = run_dir / "figure.png"
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def _marker(points: int) -> str | None:
    """Markers for curves with few points, so that a short run does not draw an empty axis."""
    return "o" if points <= 15 else None


def _draw_distribution(ax, dist: pd.DataFrame) -> None:
    """Reference, policy and pi* over completions; bars for a few, lines for many (a 100-arm bandit's bars
    are thinner than a pixel), with the reward on a second axis."""
    x = dist["completion"].to_numpy()
    if len(dist) <= 20:
        width = 0.27
        for i, column in enumerate(("reference", "policy", "optimum")):
            ax.bar(x + (i - 1) * width, dist[column], width=width, label=column)
    else:
        for column, style in (("reference", "-"), ("policy", "-"), ("optimum", "--")):
            ax.plot(x, dist[column], ls=style, lw=1.5, label=column)
            ax.fill_between(x, 0, dist[column], alpha=0.15)
    ax.set(title="distribution at the end", xlabel="completion", ylabel="probability", ylim=(0, None))
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, frameon=False)
    if dist["reward"].notna().any():
        twin = ax.twinx()
        twin.plot(x, dist["reward"], color="black", lw=1, ls="--")
        twin.set(ylabel="reward (dashed)", ylim=(0, None))
        twin.grid(False)


def _overrides(run_dir: Path) -> list[str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    return yaml.safe_load(path.read_text()) or [] if path.exists() else []


def natural_key(text: str) -> list:
    """Sort 'sync_every=4' before 'sync_every=16'."""
    return [float(part) if part.replace(".", "", 1).isdigit() else part for part in re.split(r"(\d+(?:\.\d+)?)", text)]


FACETS = ("task.reward", "sampling", "algo")  # a sweep over two or more settings gets one panel per value of the
# first of these that varies; colours are the other settings


def load_sweep(root: Path) -> pd.DataFrame:
    """All runs below `root` in one long table with `label`, `seed` and one column per varying override."""
    runs = sorted(p.parent for p in Path(root).rglob(METRICS))
    if not runs:
        raise SystemExit(f"alignlab-plot: no {METRICS} below {root}. Fix: point it at a run or multirun directory.")
    overrides = {run: dict(o.split("=", 1) for o in _overrides(run) if "=" in o) for run in runs}
    keys = sorted({k for o in overrides.values() for k in o})
    varying = [k for k in keys if k != "seed" and len({o.get(k) for o in overrides.values()}) > 1]
    frames = []
    for run in runs:
        frame = pd.read_csv(run / METRICS)
        o = overrides[run]
        frame["label"] = ", ".join(f"{k}={o.get(k, '-')}" for k in varying) or "mean over seeds"
        for k in varying:
            frame[k] = o.get(k, "-")
        frame["seed"] = o.get("seed", "0")
        frame["run"] = str(run)
        frames.append(frame)
    data = pd.concat(frames, ignore_index=True)
    data.attrs["varying"] = varying
    return data


def _layout(data: pd.DataFrame) -> tuple[str | None, list[str]]:
    """(the facet key or None, the keys that colour the lines); writes the colour label in data['hue']."""
    varying = data.attrs.get("varying", [])
    facet = next((k for k in FACETS if k in varying), None) if len(varying) >= 2 else None
    hue_keys = [k for k in varying if k != facet]
    data["hue"] = (
        data[hue_keys].astype(str).apply(lambda r: ", ".join(f"{k}={v}" for k, v in r.items()), axis=1)
        if (hue_keys)
        else data["label"]
    )
    return facet, hue_keys


def _axes(count: int, wide: bool, sharey: bool = True):
    cols = min(count, 4)
    rows = -(-count // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=((9 if wide and cols == 1 else 4.6 * cols), 3.6 * rows), squeeze=False, sharey=sharey
    )
    flat = list(axes.flat)
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]


def _legend(fig, axes, title: str | None = None) -> None:
    """One legend for the figure, right of the panels (off the data), in natural order (4 before 16)."""
    fig.tight_layout()
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    order = sorted(range(len(labels)), key=lambda i: natural_key(labels[i]))
    fig.legend(
        [handles[i] for i in order],
        [labels[i] for i in order],
        fontsize=8,
        title=title,
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        frameon=False,
    )


def plot_sweep(root: Path, out_dir: Path | None = None) -> list[Path]:
    root = Path(root)
    data = load_sweep(root)
    out_dir = Path(out_dir or root)
    out_dir.mkdir(parents=True, exist_ok=True)
    facet, _ = _layout(data)
    hues = sorted(data["hue"].unique(), key=natural_key)
    sns.set_theme(style="whitegrid", context="notebook")
    colors = sns.color_palette("tab20" if len(hues) > 10 else "tab10", len(hues))
    palette = dict(zip(hues, colors, strict=True))
    panels = sorted(data[facet].unique(), key=natural_key) if facet else [None]
    wide = len(hues) > 8
    paths = []

    # reward against iteration (or prompts seen when the round size varies): mean and one s.d. over seeds
    x_name, x_label = "iteration", "iteration"
    if "sampling.prompts_per_round" in data.attrs.get("varying", []):
        data["prompts seen"] = data["iteration"] * data["sampling.prompts_per_round"].astype(float)
        x_name, x_label = "prompts seen", "prompts seen (iteration x B)"
    evaluated = data.dropna(subset=["eval/reward"])
    low, high = evaluated["eval/reward"].min(), evaluated["eval/reward"].max()
    fig, axes = _axes(len(panels), wide)
    for ax, panel in zip(axes, panels, strict=True):
        part = evaluated if panel is None else evaluated[evaluated[facet] == panel]
        for hue in hues:
            curve = part[part["hue"] == hue].groupby(x_name)["eval/reward"].agg(["mean", "std"]).fillna(0.0)
            if curve.empty:
                continue
            x = curve.index.to_numpy(dtype=float)
            ax.plot(x, curve["mean"], color=palette[hue], label=hue, marker=_marker(len(curve)), ms=4)
            band_low = (curve["mean"] - curve["std"]).clip(low, high)
            band_high = (curve["mean"] + curve["std"]).clip(low, high)
            ax.fill_between(x, band_low, band_high, color=palette[hue], alpha=0.2, lw=0)
        ax.set(title=f"{facet}={panel}" if facet else "", xlabel=x_label, ylabel="reward")
    fig.suptitle("expected reward (mean and one s.d. across seeds)", fontsize=11)
    _legend(fig, axes)
    paths.append(_save(fig, out_dir / "reward_vs_iteration.png"))

    # reward against KL: every evaluation (small), the final ones (large) and the frontier of each group
    group = "sampling" if "sampling" in data.attrs.get("varying", []) else "hue"
    groups = sorted(data[group].unique(), key=natural_key)
    group_colors = (
        palette if group == "hue" else dict(zip(groups, sns.color_palette("tab10", len(groups)), strict=True))
    )
    points = data.dropna(subset=["eval/reward", "eval/kl_ref"])
    final = data.sort_values("iteration").groupby("run").tail(1)
    rewards = sorted(data["task.reward"].unique(), key=natural_key) if "task.reward" in data else [None]
    fig, axes = _axes(len(rewards), wide, sharey=False)
    for ax, reward in zip(axes, rewards, strict=True):  # different rewards are not on one scale: a panel each
        for g in groups:
            mine = points[(points[group] == g) & ((points["task.reward"] == reward) if reward else True)]
            mine = mine.sort_values("eval/kl_ref")
            color = group_colors[g]
            ax.scatter(mine["eval/kl_ref"], mine["eval/reward"], s=5, alpha=0.2, color=color, lw=0)
            label = f"{g}" if group == "hue" else f"{group}={g}: frontier"
            ax.step(mine["eval/kl_ref"], mine["eval/reward"].cummax(), where="post", color=color, lw=2, label=label)
            ends = final[(final[group] == g) & ((final["task.reward"] == reward) if reward else True)]
            ax.scatter(ends["eval/kl_ref"], ends["eval/reward"], s=30, color=color, edgecolor="black", lw=0.6, zorder=3)
        ax.set(title=f"task.reward={reward}" if reward else "", xlabel="KL(pi || pi_ref)", ylabel="reward")
    fig.suptitle(
        "reward against KL to the reference: every evaluation (dots), final (outlined), frontier (line)", fontsize=10
    )
    _legend(fig, axes)
    paths.append(_save(fig, out_dir / "reward_vs_kl.png"))

    # log-probs of chosen, rejected and their margin: one panel per configuration
    if all(c in data for c in LOGPS[:2]):
        labels = sorted(data["label"].unique(), key=natural_key)
        fig, axes = _axes(len(labels), False, sharey=False)
        for ax, label in zip(axes, labels, strict=True):
            part = data[data["label"] == label]
            for column, style, color in zip(LOGPS, ("-", "--", ":"), ("tab:blue", "tab:red", "tab:gray"), strict=True):
                if column not in part:
                    continue
                curve = part.dropna(subset=[column]).groupby("iteration")[column].mean()
                ax.plot(
                    curve.index,
                    curve.to_numpy(),
                    ls=style,
                    color=color,
                    label=column[6:],
                    marker=_marker(len(curve)),
                    ms=3,
                )
            ax.set_title(label, fontsize=8)
            ax.set(xlabel="iteration", ylabel="log-prob")
        fig.suptitle(
            "policy log-probs of each round's chosen and rejected samples, and their margin (mean over seeds)",
            fontsize=10,
        )
        fig.tight_layout()
        styles = zip(LOGPS, ("-", "--", ":"), ("tab:blue", "tab:red", "tab:gray"), strict=True)
        handles = [Line2D([], [], ls=style, color=color, label=column[6:]) for column, style, color in styles]
        fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=9)
        paths.append(_save(fig, out_dir / "logps.png"))

    columns = [c for c in ("eval/reward", "eval/kl_ref", "eval/p_optimal", "eval/mean_length") if c in final]
    table = final.groupby("label")[columns].agg(["mean", "std"]).round(4)
    table.insert(0, "runs", final.groupby("label").size())
    table = table.loc[sorted(table.index, key=natural_key)]
    table.to_csv(out_dir / "final.csv")
    (out_dir / "final.md").write_text(markdown_table(table))
    paths += [out_dir / "final.csv", out_dir / "final.md"]
    return paths


def markdown_table(table: pd.DataFrame) -> str:
    """Final metrics per configuration as a Markdown table: 'mean +- s.d.' per metric."""
    metrics = [c for c in table.columns.get_level_values(0).unique() if c != "runs"]
    lines = ["| configuration | runs | " + " | ".join(m.removeprefix("eval/") for m in metrics) + " |"]
    lines.append("|---|---:|" + "---:|" * len(metrics))
    for label, row in table.iterrows():
        std = {m: 0.0 if pd.isna(row[(m, "std")]) else row[(m, "std")] for m in metrics}
        cells = [f"{row[(m, 'mean')]:.3f} ± {std[m]:.3f}" for m in metrics]
        lines.append(f"| {label} | {int(row[('runs', '')])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="alignlab-plot", description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, help="a run directory or a multirun directory")
    parser.add_argument("--out", type=Path, default=None, help="where to write the figures (default: the directory)")
    parser.add_argument("--animate", action="store_true", help="a run: write animation.gif of its distribution")
    args = parser.parse_args(argv)
    if not args.directory.is_dir():
        parser.exit(
            2, f"alignlab-plot: error: {args.directory} is not a directory. Fix: give a run or multirun directory.\n"
        )
    if args.animate:
        from alignlab.plots.animate import animate_run

        print(animate_run(args.directory, args.out))
        return
    if (args.directory / METRICS).exists():
        paths = [plot_run(args.directory)]
    else:
        paths = plot_sweep(args.directory, args.out)
    for path in paths:
        print(path)


if __name__ == "__main__":
    main()
