"""`alignlab-plot DIR`: seaborn figures from a run or a multirun directory.

- a run (a directory with metrics.csv): figure.png with reward, KL to the reference, chosen / rejected
  log-probs, and the final distribution over completions when the task wrote distribution.csv;
- a sweep (any directory above several runs): reward_vs_iteration.png (mean and a band of one standard
  deviation across seeds), reward_vs_kl.png (the reward-KL frontier per algorithm and regime, computed as the
  T5 verdict computes it: mean over seeds, band its 95% interval), logps.png (one panel per configuration
  that logs chosen / rejected log-probs), and final.csv / final.md (final metrics of the finished runs per
  configuration, mean and standard deviation across seeds, and a count of the unfinished ones).
Every figure speaks one language: a colour per algorithm (the same in every figure), a line style per regime
(online solid, offline dashed, semi-online dotted), labels such as "DPO, online, T=4", legends in the sweep's
order. A damaged metrics.csv (empty, header-only, binary) stops with one line that names it.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import yaml  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from alignlab.stats import frontier, mean_interval  # noqa: E402
from alignlab.storage.rundir import METRICS  # noqa: E402

LOGPS = ("logps/chosen", "logps/rejected", "logps/margin")
logging.getLogger("matplotlib.category").setLevel(logging.ERROR)  # arm ids are categories on purpose
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: yaml.safe_load's objects, ten times faster


def plot_run(run_dir: Path, out: Path | None = None) -> Path:
    """figure.png for one run directory (or `out`: a .png path, or a directory to write figure.png into)."""
    run_dir = Path(run_dir)
    metrics = _metrics_or_line(run_dir / METRICS)
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
    fig.suptitle(" ".join(shown_overrides(_overrides(run_dir))) or "defaults (alignlab with no overrides)", fontsize=10)
    fig.tight_layout()
    out = Path(out) if out is not None else run_dir
    out = out if out.suffix == ".png" else out / "figure.png"
    out.parent.mkdir(parents=True, exist_ok=True)
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
    return yaml.load(path.read_text(), Loader=YAML_LOADER) or [] if path.exists() else []


def natural_key(text: str) -> list:
    """Sort 'sync_every=4' before 'sync_every=16'."""
    return [float(part) if part.replace(".", "", 1).isdigit() else part for part in re.split(r"(\d+(?:\.\d+)?)", text)]


# ---- one look for every figure: a colour per algorithm, a line style per regime, readable labels ------------
ALGOS = (  # an algorithm keeps its colour in every figure of every report; the ten that the findings plot
    # together take tab10's ten distinct hues, the other six Dark2's
    "dpo", "ipo", "best_of_n", "reinforce", "ppo", "grpo", "sft", "best_of_n_neg_worst", "best_of_n_neg_worse",
    "kto", "raft", "rest", "rwr", "superhf", "rloo", "cpo",
)  # fmt: skip
ALGO_NAMES = {
    "sft": "SFT", "best_of_n": "Best-of-N", "best_of_n_neg_worst": "Best-of-N + worst",
    "best_of_n_neg_worse": "Best-of-N + worse", "raft": "RAFT", "rest": "ReST", "rwr": "RWR", "superhf": "SuperHF",
    "reinforce": "REINFORCE", "rloo": "RLOO", "grpo": "GRPO", "ppo": "PPO", "dpo": "DPO", "ipo": "IPO",
    "kto": "KTO", "cpo": "CPO",
}  # fmt: skip
REGIME_STYLES = {"online": "-", "offline": "--", "semi-online": ":"}
KEY_NAMES = {  # swept keys as the papers write them
    "sampling.updates_per_batch": "T", "sampling.prompts_per_round": "B", "sampling.sync_every": "s",
    "algo.beta": "beta", "algo.tau": "tau", "task.reward": "reward", "data": "data", "mix": "rewards",
}  # fmt: skip
SETTING_KEYS = ("algo", "sampling", "seed")  # shown as colour and line style, not as text
NOT_SETTINGS = ("train.progress", "plot", "force", "num_seeds", "experiment", "findings.", "hydra.", "threads")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def algo_color(algo: str):
    palette = sns.color_palette("tab10", 10) + sns.color_palette("Dark2", 8)
    return palette[ALGOS.index(algo) if algo in ALGOS else len(ALGOS) + sum(map(ord, algo)) % 2]


def shade(color, rank: int, count: int):
    """The algorithm's colour, darker for the first value of another swept key and lighter for the last."""
    if count <= 1:
        return color
    mix = -0.35 + 0.8 * rank / (count - 1)  # -0.35 (darker) .. +0.45 (lighter)
    target = (0, 0, 0) if mix < 0 else (1, 1, 1)
    return tuple(c + abs(mix) * (t - c) for c, t in zip(color, target, strict=True))


def readable(key: str, value: str) -> str:
    name = KEY_NAMES.get(key, key.split(".")[-1])
    value = "∞" if key == "sampling.sync_every" and value == "null" else value.replace("_", " ")
    return f"{name}: {value}" if key in ("data", "mix") else f"{name}={value}"


def shown_overrides(overrides: list[str]) -> list[str]:
    """A run's overrides that are settings (no run-control keys such as train.progress=false)."""
    return [o for o in overrides if not o.split("=", 1)[0].startswith(NOT_SETTINGS)]


def _regime(config: dict) -> str:
    sync = (config.get("sampling") or {}).get("sync_every", 1)
    return "offline" if sync is None else "online" if int(sync) == 1 else "semi-online"


def _sweep_order(root: Path) -> dict[str, list[str]]:
    """The values of each swept key in the order the sweep lists them (the experiment's order)."""
    path = Path(root) / "multirun.yaml"
    if not path.exists():
        return {}
    params = ((yaml.safe_load(path.read_text()) or {}).get("hydra") or {}).get("sweeper", {}).get("params") or {}
    return {k: [v.strip() for v in str(values).split(",")] for k, values in params.items()}


def _metrics_or_line(path: Path) -> pd.DataFrame:
    """metrics.csv, or SystemExit with one line naming it when it is empty, header-only, binary or unreadable."""
    try:
        frame = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        raise SystemExit(
            f"alignlab-plot: error: {path} is not a metrics table ({type(error).__name__}). "
            "Fix: re-run that run, or delete it."
        ) from None
    if frame.empty or "iteration" not in frame:
        raise SystemExit(
            f"alignlab-plot: error: {path} has no rows (or no iteration column). Fix: re-run that run, or delete it."
        )
    return frame


def load_sweep(root: Path) -> pd.DataFrame:
    """All runs below `root` in one long table: `algo`, `regime`, `finished`, `label` ("DPO, online, T=4"),
    `extra` (the other swept settings), `seed`, and one column per varying override."""
    runs = sorted(p.parent for p in Path(root).rglob(METRICS))
    if not runs:
        raise SystemExit(f"alignlab-plot: no {METRICS} below {root}. Fix: point it at a run or multirun directory.")
    overrides = {run: dict(o.split("=", 1) for o in shown_overrides(_overrides(run)) if "=" in o) for run in runs}
    keys = sorted({k for o in overrides.values() for k in o})
    varying = [k for k in keys if k != "seed" and len({o.get(k) for o in overrides.values()}) > 1]
    order = _sweep_order(root)
    extra_keys = [k for k in varying if k not in SETTING_KEYS and k != "task.reward"]
    frames = []
    for run in runs:
        frame = _metrics_or_line(run / METRICS)
        config_path = run / ".hydra" / "config.yaml"
        config = (yaml.load(config_path.read_text(), Loader=YAML_LOADER) or {}) if config_path.exists() else {}
        o = overrides[run]
        algo = (config.get("algo") or {}).get("name") or o.get("algo", "?")
        frame["algo"], frame["regime"] = algo, _regime(config)
        frame["finished"] = (run / "summary.json").exists()
        for k in varying:
            frame[k] = o.get(k, "-")
        frame["extra"] = ", ".join(readable(k, o.get(k, "-")) for k in extra_keys)
        frame["label"] = ", ".join(
            x for x in (f"{ALGO_NAMES.get(algo, algo)}, {frame['regime'].iloc[0]}", frame["extra"].iloc[0]) if x
        )
        frame["seed"] = o.get("seed", "0")
        frame["run"] = str(run)
        frames.append(frame)
    data = pd.concat(frames, ignore_index=True)
    data.attrs.update(varying=varying, extra_keys=extra_keys, order=order)
    return data


def _rank(values, key: str, order: dict[str, list[str]]) -> list:
    """`values` in the sweep's order for `key` (natural order for values the sweep does not list)."""
    listed = order.get(key, [])
    return sorted(values, key=lambda v: (listed.index(v) if v in listed else len(listed), natural_key(str(v))))


def _styles(data: pd.DataFrame) -> dict[str, dict]:
    """label -> colour (the algorithm's, shaded by the other swept settings), line style (the regime), marker,
    and its place in the legend (the sweep's order: algorithm, then the other settings, then the regime)."""
    order = data.attrs.get("order", {})
    algos = _rank(data["algo"].unique(), "algo", order)
    firsts = data.groupby("label")[["algo", "regime", "extra"]].first()
    styles = {}
    for label, row in firsts.iterrows():
        extras = sorted(firsts.loc[firsts.algo == row.algo, "extra"].unique(), key=lambda e: _extra_rank(e, data))
        rank = extras.index(row.extra)
        styles[label] = {
            "color": shade(algo_color(row.algo), rank, len(extras)),
            "ls": REGIME_STYLES[row.regime],
            "marker": MARKERS[rank % len(MARKERS)],
            "key": (algos.index(row.algo), _extra_rank(row.extra, data), list(REGIME_STYLES).index(row.regime)),
        }
    return dict(sorted(styles.items(), key=lambda item: item[1]["key"]))


def _extra_rank(extra: str, data: pd.DataFrame) -> tuple:
    order = data.attrs.get("order", {})
    ranks = []
    for key in data.attrs.get("extra_keys", []):
        listed = order.get(key, [])
        value = next((v for v in listed if readable(key, v) in extra.split(", ")), None)
        ranks.append(listed.index(value) if value is not None else len(listed))
    return tuple(ranks) + (natural_key(extra),)


def _facet(data: pd.DataFrame) -> str | None:
    """One panel per reward when the reward varies; else per algorithm when each algorithm has several lines
    (T3's T, T4's B); else per regime when each regime has several (T5's beta); else one panel."""
    varying = data.attrs.get("varying", [])
    if "task.reward" in varying:
        return "task.reward"
    lines = data.groupby(["algo", "regime"])["label"].nunique()
    if data["algo"].nunique() > 1 and (lines > 1).any():
        return "algo"
    if data["regime"].nunique() > 1 and (lines > 1).any():
        return "regime"
    return None


def _axes(count: int, wide: bool, sharey: bool = True):
    cols = min(count, 4)
    rows = -(-count // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=((9 if wide and cols == 1 else 4.6 * cols), 3.6 * rows), squeeze=False, sharey=sharey
    )
    flat = list(axes.flat)
    for ax in flat[count:]:
        fig.delaxes(ax)
    return fig, flat[:count]


def _legend(fig, axes, styles: dict[str, dict]) -> None:
    """One legend for the figure, right of the panels, in the sweep's order."""
    fig.tight_layout()
    seen = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    labels = [lab for lab in styles if lab in seen] + [lab for lab in seen if lab not in styles]
    fig.legend([seen[lab] for lab in labels], labels, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5),
               frameon=False)  # fmt: skip


def _panel_title(facet: str | None, value) -> str:
    if facet is None:
        return ""
    if facet == "algo":
        return ALGO_NAMES.get(value, value)
    return readable(facet, str(value)) if facet != "regime" else str(value)


def kl_frontiers(data: pd.DataFrame, points: int = 40) -> pd.DataFrame:
    """Per algorithm, regime (and reward): the frontier T5's verdict reads (alignlab/stats.py, best reward within
    each KL budget, per seed, pooled over the other settings) on a grid of budgets, as its mean over seeds and
    the bootstrap 95% interval of that mean."""
    evaluated = data.dropna(subset=["eval/reward", "eval/kl_ref"])
    if evaluated.empty:
        return pd.DataFrame()
    top = max(float(evaluated["eval/kl_ref"].max()), 1e-3)
    budgets = np.unique(np.concatenate([np.geomspace(top / 300, top, points), [top]]))
    by = [k for k in ("task.reward", "algo", "regime") if k in evaluated] + ["seed"]
    table = frontier(evaluated, budgets, by=by)
    table.index = pd.MultiIndex.from_tuples(table.index, names=by)
    rows = []
    for group, part in table.groupby(level=by[:-1]):
        group = group if isinstance(group, tuple) else (group,)
        for budget in budgets:
            values = part[budget].dropna()
            if len(values) < len(part):  # a budget some seed does not reach: no mean over all seeds
                continue
            mean, low, high = mean_interval(values)
            rows.append({**dict(zip(by[:-1], group, strict=True)), "kl": budget, "mean": mean, "low": low,
                         "high": high})  # fmt: skip
    return pd.DataFrame(rows)


def plot_sweep(root: Path, out_dir: Path | None = None) -> list[Path]:
    root = Path(root)
    data = load_sweep(root)
    out_dir = Path(out_dir or root)
    out_dir.mkdir(parents=True, exist_ok=True)
    sns.set_theme(style="whitegrid", context="notebook")
    styles = _styles(data)
    facet = _facet(data)
    panels = _rank(data[facet].unique(), facet, data.attrs["order"]) if facet else [None]
    wide = len(styles) > 8
    paths = []

    # reward against iteration (or prompts seen when the round size varies): mean and one s.d. over seeds
    x_name, x_label = "iteration", "iteration"
    if "sampling.prompts_per_round" in data.attrs.get("varying", []):
        data["prompts seen"] = data["iteration"] * data["sampling.prompts_per_round"].astype(float)
        x_name, x_label = "prompts seen", "prompts seen (iteration x B)"
    evaluated = data.dropna(subset=["eval/reward"])
    low, high = evaluated["eval/reward"].min(), evaluated["eval/reward"].max()
    panels = [p for p in panels if p is None or not evaluated[evaluated[facet] == p].empty]
    fig, axes = _axes(len(panels), wide)
    for ax, panel in zip(axes, panels, strict=True):
        part = evaluated if panel is None else evaluated[evaluated[facet] == panel]
        for label, style in styles.items():
            curve = part[part["label"] == label].groupby(x_name)["eval/reward"].agg(["mean", "std"]).fillna(0.0)
            if curve.empty:
                continue
            x = curve.index.to_numpy(dtype=float)
            every = max(1, len(curve) // 8)
            ax.plot(x, curve["mean"], color=style["color"], ls=style["ls"], label=label, marker=style["marker"],
                    markevery=every, ms=4)  # fmt: skip
            band_low = (curve["mean"] - curve["std"]).clip(low, high)
            band_high = (curve["mean"] + curve["std"]).clip(low, high)
            ax.fill_between(x, band_low, band_high, color=style["color"], alpha=0.15, lw=0)
        ax.set(title=_panel_title(facet, panel), xlabel=x_label, ylabel="expected reward")
    fig.suptitle("expected reward (mean and one s.d. across seeds)", fontsize=11)
    _legend(fig, axes, styles)
    paths.append(_save(fig, out_dir / "reward_vs_iteration.png"))

    # reward against KL: the frontier per algorithm and regime, as T5's verdict computes it, with its interval
    fronts = kl_frontiers(data)
    if not fronts.empty:
        rewards = _rank(fronts["task.reward"].unique(), "task.reward", data.attrs["order"]) if (
            "task.reward" in fronts) else [None]  # fmt: skip
        fig, axes = _axes(len(rewards), False, sharey=False)
        for ax, reward in zip(axes, rewards, strict=True):  # different rewards are not on one scale: a panel each
            part = fronts if reward is None else fronts[fronts["task.reward"] == reward]
            for (algo, regime), line in part.groupby(["algo", "regime"]):
                color, label = algo_color(algo), f"{ALGO_NAMES.get(algo, algo)}, {regime}"
                ax.plot(line["kl"], line["mean"], color=color, ls=REGIME_STYLES[regime], lw=2, label=label)
                ax.fill_between(line["kl"], line["low"], line["high"], color=color, alpha=0.15, lw=0)
            ax.set(title="" if reward is None else readable("task.reward", reward), xscale="log",
                   xlabel="KL budget: KL(pi || pi_ref) <= K", ylabel="best reward within the budget")  # fmt: skip
        fig.suptitle("reward-KL frontier per algorithm and regime: mean over seeds, band 95% interval", fontsize=10)
        frontier_styles = {f"{ALGO_NAMES.get(a, a)}, {r}": {} for a in _rank(fronts["algo"].unique(), "algo",
                           data.attrs["order"]) for r in REGIME_STYLES}  # fmt: skip
        _legend(fig, axes, frontier_styles)
        paths.append(_save(fig, out_dir / "reward_vs_kl.png"))

    # log-probs of chosen, rejected and their margin: one panel per configuration that logs them
    if all(c in data for c in LOGPS[:2]):
        rewards = [None]
        if "task.reward" in data.attrs.get("varying", []):
            rewards = _rank(data["task.reward"].unique(), "task.reward", data.attrs["order"])
        cells = []  # (reward, label) of every configuration that logs log-probs, in the sweep's order
        for reward in rewards:
            mine = data if reward is None else data[data["task.reward"] == reward]
            cells += [(reward, lab) for lab in styles if mine.loc[mine["label"] == lab, LOGPS[0]].notna().any()]
        if cells:
            fig, axes = _axes(len(cells), False, sharey=False)
            for ax, (reward, label) in zip(axes, cells, strict=True):
                part = data[data["label"] == label]
                part = part if reward is None else part[part["task.reward"] == reward]
                for column, ls, color in zip(LOGPS, ("-", "--", ":"), ("tab:blue", "tab:red", "tab:gray"), strict=True):
                    if column not in part:
                        continue
                    curve = part.dropna(subset=[column]).groupby("iteration")[column].mean()
                    ax.plot(curve.index, curve.to_numpy(), ls=ls, color=color, label=column[6:],
                            marker=_marker(len(curve)), ms=3)  # fmt: skip
                ax.set_title(label if reward is None else f"{label} ({readable('task.reward', reward)})", fontsize=9)
                ax.set(xlabel="iteration", ylabel="log-prob")
            fig.suptitle(
                "policy log-probs of each round's chosen and rejected samples, and their margin (mean over seeds)",
                fontsize=10,
            )
            fig.tight_layout()
            styles_lp = zip(LOGPS, ("-", "--", ":"), ("tab:blue", "tab:red", "tab:gray"), strict=True)
            handles = [Line2D([], [], ls=ls, color=color, label=column[6:]) for column, ls, color in styles_lp]
            fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=9)
            paths.append(_save(fig, out_dir / "logps.png"))

    final = data.sort_values("iteration").groupby("run").tail(1)
    done = final[final["finished"]]
    columns = [c for c in ("eval/reward", "eval/kl_ref", "eval/p_optimal", "eval/mean_length") if c in final]
    table = done.groupby("label")[columns].agg(["mean", "std"]).round(4).reindex(list(styles))
    table.insert(0, "runs", done.groupby("label").size().reindex(list(styles)).fillna(0).astype(int))
    table.insert(1, "unfinished", (~final["finished"]).groupby(final["label"]).sum().reindex(list(styles)).astype(int))
    table.to_csv(out_dir / "final.csv")
    (out_dir / "final.md").write_text(markdown_table(table))
    paths += [out_dir / "final.csv", out_dir / "final.md"]
    return paths


def markdown_table(table: pd.DataFrame) -> str:
    """Final metrics per configuration as a Markdown table: 'mean +- s.d.' per metric."""
    metrics = [c for c in table.columns.get_level_values(0).unique() if c not in ("runs", "unfinished")]
    lines = ["| configuration | runs | unfinished | " + " | ".join(m.removeprefix("eval/") for m in metrics) + " |"]
    lines.append("|---|---:|---:|" + "---:|" * len(metrics))
    for label, row in table.iterrows():
        std = {m: 0.0 if pd.isna(row[(m, "std")]) else row[(m, "std")] for m in metrics}
        cells = ["n/a" if pd.isna(row[(m, "mean")]) else f"{row[(m, 'mean')]:.3f} ± {std[m]:.3f}" for m in metrics]
        counts = f"{int(row[('runs', '')])} | {int(row[('unfinished', '')])}"
        lines.append(f"| {label} | {counts} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="alignlab-plot", description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, help="a run directory or a multirun directory")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write the figures: a directory, or a file for one run "
        "(.png) or --animate (.gif); default: the directory itself",
    )
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
        paths = [plot_run(args.directory, args.out)]
    else:
        paths = plot_sweep(args.directory, args.out)
    for path in paths:
        print(path)


if __name__ == "__main__":
    main()
