"""`alignlab-plot --animate RUN_DIR`: a GIF of the policy's distribution moving from the reference towards pi*.

It reads the run's distributions.csv (one table per evaluation: the policy, the reference, pi* and the reward
of each completion, i.e. of each arm on a bandit or each completion length on a language model; written while
the run trains, see alignlab/runs/loggers.py) and metrics.csv (the reward curve drawn beside it), and writes
animation.gif with matplotlib's animation module and Pillow.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.animation import FuncAnimation, PillowWriter  # noqa: E402

from alignlab.storage.rundir import DISTRIBUTIONS, METRICS  # noqa: E402


def animate_run(run_dir: Path, out: Path | None = None, max_frames: int = 60, fps: int = 10) -> Path:
    """Write RUN_DIR/animation.gif (or `out`): one frame per recorded evaluation, at most `max_frames`."""
    run_dir = Path(run_dir)
    path = run_dir / DISTRIBUTIONS
    if not path.exists():
        raise SystemExit(
            f"alignlab-plot: {path} does not exist, so there is nothing to animate. Fix: run with "
            "record_distribution=true on a task that records its distribution (task=bandit, task=synthetic_llm)."
        )
    record = pd.read_csv(path)
    metrics = pd.read_csv(run_dir / METRICS).dropna(subset=["eval/reward"])
    iterations = sorted(record["iteration"].unique())
    step = max(1, -(-len(iterations) // max_frames))
    frames = iterations[::step] if iterations[-1] in iterations[::step] else iterations[::step] + [iterations[-1]]
    tables = {i: t.sort_values("completion").reset_index(drop=True) for i, t in record.groupby("iteration")}
    first = tables[frames[0]]
    x = first["completion"].to_numpy()
    top = max(record["policy"].max(), record["reference"].max(), record["optimum"].max(skipna=True) or 0) * 1.1

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [1.3, 1]})
    left.bar(x, first["reference"], color="none", edgecolor="grey", lw=1.2, label="reference", zorder=3)
    bars = left.bar(x, first["policy"], color="tab:blue", alpha=0.75, label="policy")
    if first["optimum"].notna().any():
        left.plot(x, first["optimum"], "o", color="tab:red", ms=5, label="pi* (optimum)")
    reward_axis = left.twinx()
    reward_axis.plot(x, first["reward"], "k--", lw=1, label="reward")
    reward_axis.set(ylim=(0, max(1.0, first["reward"].max(skipna=True) or 1.0) * 1.05), ylabel="reward")
    left.set(ylim=(0, top), xlabel="completion (arm or length)", ylabel="probability")
    left.legend(loc="upper center", fontsize=8, ncol=3)

    right.plot(metrics["iteration"], metrics["eval/reward"], color="lightgrey", lw=1)
    (curve,) = right.plot([], [], color="tab:blue", lw=2)
    (dot,) = right.plot([], [], "o", color="tab:blue")
    right.set(xlabel="iteration", ylabel="expected reward", title="reward")
    right.set_xlim(0, metrics["iteration"].max())
    low, high = metrics["eval/reward"].min(), metrics["eval/reward"].max()
    right.set_ylim(low - 0.05 * (high - low + 1e-9), high + 0.05 * (high - low + 1e-9))
    fig.tight_layout()

    def draw(iteration: int):
        for bar, height in zip(bars, tables[iteration]["policy"], strict=True):
            bar.set_height(height)
        upto = metrics[metrics["iteration"] <= iteration]
        curve.set_data(upto["iteration"], upto["eval/reward"])
        if len(upto):
            dot.set_data(upto["iteration"].iloc[-1:], upto["eval/reward"].iloc[-1:])
        left.set_title(f"distribution at iteration {iteration}")
        return [*bars, curve, dot]

    out = Path(out) if out is not None else run_dir / "animation.gif"
    animation = FuncAnimation(fig, draw, frames=frames, blit=False)
    animation.save(out, writer=PillowWriter(fps=fps))
    plt.close(fig)
    return out
