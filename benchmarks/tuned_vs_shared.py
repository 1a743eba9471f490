"""The tier-1 grid with shared settings against the same grid with each objective's tuned settings.

    alignlab -m experiment=tajwar_bandit_grid seed=100 num_seeds=5 experiment_name=grid_shared
    alignlab -m experiment=tajwar_bandit_grid task.reward=hard sampling=online tuned=bandit_r1_online \\
        seed=100 num_seeds=5 experiment_name=grid_tuned_r1_online      (and r1 offline, r2 = easy on/offline)
    python benchmarks/tuned_vs_shared.py multirun/grid_shared multirun/grid_tuned_*
    python benchmarks/tuned_vs_shared.py multirun/grid_shared mean=multirun/grid_mean min=multirun/grid_min

Seeds 100.. are held out: the tuning trials used seeds 0..num_seeds-1. The first directory is the shared grid; each
other one is a tuned grid, optionally labelled `LABEL=DIR` (one column per label, default `tuned`). Prints one
Markdown table per reward and sampling regime (final expected reward, mean +- s.d. over seeds, the worst seed,
and each objective's rank), the Spearman rank correlation between the shared and each tuned ranking (the ranking
is "unchanged" only if it is 1), how many objectives tuning raises or lowers by more than 0.01, and, per reward,
whether online still beats offline (for how many objectives, and best offline against worst online).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import yaml

ROLES = yaml.safe_load((Path(__file__).resolve().parents[1] / "conf" / "task" / "bandit.yaml").read_text())["task"][
    "roles"
]
TOLERANCE = 0.01  # a difference smaller than this counts as a tie


def load(root: Path, label: str) -> pd.DataFrame:
    rows = []
    for summary in Path(root).glob("*/summary.json"):
        overrides = dict(
            o.split("=", 1) for o in yaml.safe_load((summary.parent / ".hydra" / "overrides.yaml").read_text())
        )
        data = json.loads(summary.read_text())
        seeds = [json.loads((summary.parent / f"seed={s}" / "summary.json").read_text()) for s in data["seeds"]]
        reward = overrides.get("task.reward", "r1")
        rows.append(
            {
                "label": label,
                "reward_name": ROLES.get(reward, reward).upper(),
                "algo": data["algo"],
                "sampling": data["sampling"],
                "reward": data["reward"],
                "std": data.get("reward_std", 0.0),
                "worst": min(s["reward"] for s in seeds),
                "seeds": data.get("num_seeds", 1),
            }
        )
    return pd.DataFrame(rows)


def ranks(frame: pd.DataFrame) -> pd.Series:
    return frame["reward"].rank(ascending=False, method="min").astype(int)


def table(shared: pd.DataFrame, tuned: dict[str, pd.DataFrame], title: str) -> None:
    common = sorted(set(shared.index).intersection(*(set(t.index) for t in tuned.values())))
    shared = shared.loc[common]
    tuned = {label: t.loc[common] for label, t in tuned.items()}
    rank = {"shared": ranks(shared), **{label: ranks(t) for label, t in tuned.items()}}
    columns = {"shared": shared, **tuned}
    last = list(tuned)[-1]
    print(
        f"\n{title}: final expected reward, mean ± s.d. (worst seed) over {int(shared['seeds'].iloc[0])} held-out seeds"
    )
    print("| algo | " + " | ".join(f"{name} | rank" for name in columns) + " |")
    print("|---|" + "---:|---:|" * len(columns))
    for algo in sorted(common, key=lambda a: (rank[last][a], a)):
        cells = [
            f"{c.reward[algo]:.3f} ± {c['std'][algo]:.3f} ({c.worst[algo]:.2f}) | {rank[n][algo]}"
            for n, c in columns.items()
        ]
        print(f"| `{algo}` | " + " | ".join(cells) + " |")
    print()
    for label, t in tuned.items():
        rho = rank["shared"].corr(rank[label], method="spearman")
        diff = t["reward"] - shared["reward"]
        up, down = int((diff > TOLERANCE).sum()), int((diff < -TOLERANCE).sum())
        moved = int((rank["shared"] - rank[label]).abs().ge(3).sum())
        verdict = "unchanged" if rho == 1 else "changed"
        print(
            f"- {label}: Spearman rank correlation {rho:.2f} with shared (ranking {verdict}; "
            f"{moved} objectives move 3 or more places); tuning raises {up} and lowers {down} of {len(common)} "
            f"(by more than {TOLERANCE}); mean over objectives {t['reward'].mean():.3f} against shared "
            f"{shared['reward'].mean():.3f}; worst seeds below 0.5: {int((t.worst < 0.5).sum())} against "
            f"{int((shared.worst < 0.5).sum())}; best {rank[label].idxmin()} (shared: {rank['shared'].idxmin()})"
        )


def online_beats_offline(frames: dict[str, pd.DataFrame], reward: str) -> None:
    for label, frame in frames.items():
        here = frame[frame.reward_name == reward]
        if set(here.sampling) != {"online", "offline"}:
            continue
        on = here[here.sampling == "online"].set_index("algo")["reward"]
        off = here[here.sampling == "offline"].set_index("algo")["reward"]
        common = sorted(set(on.index) & set(off.index))
        on, off = on.loc[common], off.loc[common]
        wins = int((on > off + TOLERANCE).sum())
        print(
            f"- {reward} {label}: online beats offline for {wins} of {len(common)} objectives; mean online "
            f"{on.mean():.3f}, offline {off.mean():.3f}; best offline {off.idxmax()} {off.max():.3f}, worst online "
            f"{on.idxmin()} {on.min():.3f}"
        )


def pick(frame: pd.DataFrame, reward: str, sampling: str) -> pd.DataFrame:
    return frame[(frame.reward_name == reward) & (frame.sampling == sampling)].set_index("algo")


def main() -> None:
    shared = load(Path(sys.argv[1]), "shared")
    tuned = pd.concat(
        [load(Path(a.split("=", 1)[-1]), a.split("=", 1)[0] if "=" in a else "tuned") for a in sys.argv[2:]],
        ignore_index=True,
    )
    labels = list(dict.fromkeys(tuned["label"]))
    for reward, sampling in sorted(set(zip(tuned.reward_name, tuned.sampling, strict=True))):
        columns = {label: pick(tuned[tuned.label == label], reward, sampling) for label in labels}
        columns = {label: frame for label, frame in columns.items() if len(frame)}
        table(pick(shared, reward, sampling), columns, f"{reward} {sampling}")
    print("\nOnline against offline:")
    frames = {"shared": shared, **{label: tuned[tuned.label == label] for label in labels}}
    for reward in sorted(set(tuned.reward_name)):
        online_beats_offline(frames, reward)


if __name__ == "__main__":
    main()
