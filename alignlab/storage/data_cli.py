"""`alignlab-data`: show a recording (a run directory run with record_rollouts=true, or its rollouts.parquet).

    alignlab-data outputs/record_rollouts=true                 # per-round table, a few completions per round
    alignlab-data outputs/record_rollouts=true --rounds 5 --examples 3 --figure recording.png

Checks the recording first (its manifest: every round present, none extra, each matching its checksum) and
refuses a damaged one in one line. Prints samples per round, the reward (mean and quartiles; each component of
a mixed reward) and, on language-model tiers, the completion length over rounds, then a few completions of some
rounds; with `--figure`, draws the reward and length distributions over rounds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from alignlab.errors import AlignlabError
from alignlab.storage.recording import read_table


def length_column(frame: pd.DataFrame) -> pd.Series | None:
    if "completion_tokens" in frame:
        return frame["completion_tokens"].map(len)
    return None


def per_round(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per round: samples, sync, reward mean and quartiles, components' means, mean length."""
    frame = frame.assign(length=length_column(frame)) if "completion_tokens" in frame else frame
    grouped = frame.groupby("round")
    table = pd.DataFrame(
        {
            "samples": grouped.size(),
            "sync": grouped["sync"].max() if "sync" in frame else 0,
            "reward": grouped["reward"].mean(),
            "reward_q25": grouped["reward"].quantile(0.25),
            "reward_q75": grouped["reward"].quantile(0.75),
        }
    )
    for column in frame:
        if column.startswith("reward/"):
            table[column] = grouped[column].mean()
    if "length" in frame:
        table["length"] = grouped["length"].mean()
    if "completion" in frame:  # a bandit arm
        table["mean_arm"] = grouped["completion"].mean()
    return table


def examples(frame: pd.DataFrame, rounds: list[int], count: int) -> list[str]:
    if "completion_text" not in frame:
        return []
    lines = []
    for r in rounds:
        rows = frame[frame["round"] == r].head(count)
        lines.append(f"round {r}:")
        for _, row in rows.iterrows():
            lines.append(f"  {row.get('prompt_text', '')!r} -> {row['completion_text']!r}  reward={row['reward']:.3g}")
    return lines


def draw(frame: pd.DataFrame, path: Path) -> Path:
    """The figure at `path` (a name without a suffix gets .png, as matplotlib gives it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    frame = frame.assign(length=length_column(frame)) if "completion_tokens" in frame else frame
    panels = ["reward"] + (["length"] if "length" in frame else ["completion"] if "completion" in frame else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
    for ax, column in zip(axes[0], panels, strict=True):
        sns.lineplot(data=frame, x="round", y=column, errorbar=("pi", 50), ax=ax)
        ax.set_title(f"{column} per round (median, 25-75%)")
    fig.tight_layout()
    path = path if path.suffix else path.with_suffix(".png")  # matplotlib adds .png to a bare name: say so
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="alignlab-data", description=__doc__.split("\n\n")[0])
    parser.add_argument("recording", help="a run directory, its rollouts.parquet, or a .parquet/.jsonl file")
    parser.add_argument("--rounds", type=int, default=10, help="rounds to show in the table (evenly spaced)")
    parser.add_argument("--examples", type=int, default=2, help="completions shown per round (LM tiers)")
    parser.add_argument("--figure", type=Path, default=None, help="draw reward/length over rounds to this file")
    args = parser.parse_args(argv)
    try:
        frame, metadata = read_table(args.recording)
    except AlignlabError as error:
        print(f"alignlab-data: error: {error}", file=sys.stderr)
        sys.exit(2)
    table = per_round(frame)
    step = max(1, len(table) // max(args.rounds, 1))
    shown = table.iloc[::step]
    task = metadata.get("task", "?")
    print(f"{args.recording}: task {task}, {len(frame)} samples in {len(table)} rounds")
    first = metadata.get("manifest", {}).get("first_round", 1)
    if first != 1:
        print(f"partial: it starts at round {first} (record_rollouts was turned on when its run resumed there)")
    print(shown.to_string(float_format=lambda x: f"{x:.4g}"))
    for line in examples(frame, [int(r) for r in shown.index[:: max(1, len(shown) // 3)]], args.examples):
        print(line)
    if args.figure is not None:
        print(f"figure -> {draw(frame, args.figure)}")


if __name__ == "__main__":
    main()
