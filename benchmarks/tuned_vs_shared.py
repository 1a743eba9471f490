"""The tier-1 grid with shared settings against the same grid with each objective's tuned settings.

    alignlab -m experiment=tajwar_bandit_grid task.reward=r1 seed=100 num_seeds=5 experiment_name=grid_shared_r1
    alignlab -m experiment=tajwar_bandit_grid task.reward=r1 sampling=online tuned=bandit_r1_online \\
        seed=100 num_seeds=5 experiment_name=grid_tuned_r1_online          (and the same for offline)
    python benchmarks/tuned_vs_shared.py multirun/grid_shared_r1 multirun/grid_tuned_r1_*

Seeds 100.. are held out: the tuning trials used seeds 0..num_seeds-1. Prints one Markdown table per sampling
regime (final expected reward, mean +- s.d. over seeds, and each objective's rank), and the Spearman rank
correlation between the two rankings: the ranking is "unchanged" only if the correlation is 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import yaml


def load(root: Path) -> pd.DataFrame:
    rows = []
    for summary in Path(root).glob("*/summary.json"):
        overrides = dict(
            o.split("=", 1) for o in yaml.safe_load((summary.parent / ".hydra" / "overrides.yaml").read_text())
        )
        data = json.loads(summary.read_text())
        rows.append(
            {
                "algo": data["algo"],
                "sampling": data["sampling"],
                "reward": data["reward"],
                "std": data.get("reward_std", 0.0),
                "seeds": data.get("num_seeds", 1),
                "tuned": overrides.get("tuned", ""),
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    shared = load(Path(sys.argv[1]))
    tuned = pd.concat([load(Path(p)) for p in sys.argv[2:]], ignore_index=True)
    for sampling in sorted(set(tuned["sampling"])):
        a = shared[shared["sampling"] == sampling].set_index("algo")
        b = tuned[tuned["sampling"] == sampling].set_index("algo")
        common = sorted(set(a.index) & set(b.index))
        a, b = a.loc[common], b.loc[common]
        rank_a = a["reward"].rank(ascending=False, method="min").astype(int)
        rank_b = b["reward"].rank(ascending=False, method="min").astype(int)
        rho = rank_a.corr(rank_b, method="spearman")
        print(f"\nR1 {sampling}: final expected reward, mean ± s.d. over {int(a['seeds'].iloc[0])} held-out seeds")
        print("| algo | shared | rank | tuned | rank |")
        print("|---|---:|---:|---:|---:|")
        for algo in sorted(common, key=lambda x: rank_b[x]):
            print(
                f"| `{algo}` | {a.reward[algo]:.3f} ± {a['std'][algo]:.3f} | {rank_a[algo]} | "
                f"{b.reward[algo]:.3f} ± {b['std'][algo]:.3f} | {rank_b[algo]} |"
            )
        moved = int((rank_a - rank_b).abs().ge(3).sum())
        verdict = "unchanged" if rho == 1 else "changed"
        print(
            f"\nSpearman rank correlation {rho:.2f}: ranking {verdict}; {moved} objectives move 3 or more places; "
            f"best shared: {rank_a.idxmin()}, best tuned: {rank_b.idxmin()}"
        )


if __name__ == "__main__":
    main()
