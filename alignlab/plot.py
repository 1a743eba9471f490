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

from alignlab.rundir import METRICS  # noqa: E402

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
        sns.lineplot(data=data, x="iteration", y=column, ax=ax)
        ax.set(title=title, ylabel="")
    index = len(panels)
    if has_logps:
        ax = axes[index]
        long = metrics.melt(
            id_vars="iteration", value_vars=[c for c in LOGPS if c in metrics], var_name="", value_name="log-prob"
        )
        sns.lineplot(data=long.dropna(), x="iteration", y="log-prob", hue="", ax=ax)
        ax.set(title="policy log-probs of chosen / rejected")
        index += 1
    if distribution.exists():
        ax = axes[index]
        dist = pd.read_csv(distribution)
        dist["completion"] = dist["completion"].astype(str)
        long = dist.melt(
            id_vars="completion", value_vars=["reference", "policy", "optimum"], var_name="", value_name="probability"
        )
        sns.barplot(data=long.dropna(), x="completion", y="probability", hue="", ax=ax)
        ax.set(title="distribution at the end")
        if len(dist) > 20:
            ax.set_xticks(ax.get_xticks()[:: max(1, len(dist) // 10)])
        twin = ax.twinx()
        twin.plot(range(len(dist)), dist["reward"], color="black", lw=1, ls="--", label="reward")
        twin.set(ylabel="reward", ylim=(0, None))
        twin.grid(False)
    fig.suptitle(" ".join(_overrides(run_dir)) or "defaults (alignlab with no overrides)", fontsize=10)
    fig.tight_layout()
    out = run_dir / "figure.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _overrides(run_dir: Path) -> list[str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    return yaml.safe_load(path.read_text()) or [] if path.exists() else []


def natural_key(text: str) -> list:
    """Sort 'sync_every=4' before 'sync_every=16'."""
    return [float(part) if part.replace(".", "", 1).isdigit() else part for part in re.split(r"(\d+(?:\.\d+)?)", text)]


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
        frame["label"] = ", ".join(f"{k}={o.get(k, '-')}" for k in varying) or run.name
        for k in varying:
            frame[k] = o.get(k, "-")
        frame["seed"] = o.get("seed", "0")
        frame["run"] = str(run)
        frames.append(frame)
    data = pd.concat(frames, ignore_index=True)
    data.attrs["varying"] = varying
    return data


def plot_sweep(root: Path, out_dir: Path | None = None) -> list[Path]:
    root = Path(root)
    out_dir = Path(out_dir or root)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load_sweep(root)
    labels = sorted(data["label"].unique(), key=natural_key)
    sns.set_theme(style="whitegrid", context="notebook")
    colors = sns.color_palette("tab20" if len(labels) > 10 else "tab10", len(labels))
    palette = dict(zip(labels, colors, strict=True))
    wide = len(labels) > 8
    paths = []

    fig, ax = plt.subplots(figsize=(9 if wide else 6.5, 4.2))
    sns.lineplot(
        data=data.dropna(subset=["eval/reward"]),
        x="iteration",
        y="eval/reward",
        hue="label",
        errorbar="sd",
        palette=palette,
        ax=ax,
    )
    ax.set(title="expected reward (mean and one s.d. across seeds)", ylabel="reward")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    paths.append(_save(fig, out_dir / "reward_vs_iteration.png"))

    final = data.sort_values("iteration").groupby("run").tail(1)
    fig, ax = plt.subplots(figsize=(9 if wide else 6.5, 4.2))
    varying = data.attrs.get("varying", [])
    if len(varying) == 2:  # colour for the setting with fewer values (say, online/offline), marker for the other
        hue, style = sorted(varying, key=lambda k: final[k].nunique())
        order = sorted(final[style].unique(), key=natural_key)
        sns.scatterplot(
            data=final, x="eval/kl_ref", y="eval/reward", hue=hue, style=style, style_order=order, ax=ax, s=50
        )
    else:
        sns.scatterplot(data=final, x="eval/kl_ref", y="eval/reward", hue="label", palette=palette, ax=ax, s=30)
    ax.set(
        title="final reward against KL to the reference (one point per run)", xlabel="KL(pi || pi_ref)", ylabel="reward"
    )
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    paths.append(_save(fig, out_dir / "reward_vs_kl.png"))

    if all(c in data for c in LOGPS[:2]):
        long = data.melt(
            id_vars=["iteration", "label", "run"], value_vars=list(LOGPS[:2]), var_name="which", value_name="log-prob"
        )
        fig, ax = plt.subplots(figsize=(9 if wide else 6.5, 4.2))
        sns.lineplot(
            data=long.dropna(),
            x="iteration",
            y="log-prob",
            hue="label",
            style="which",
            errorbar=None,
            palette=palette,
            ax=ax,
        )
        ax.set(title="policy log-probs of chosen (solid) and rejected (dashed) samples")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
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
    if args.animate:
        from alignlab.animate import animate_run

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
