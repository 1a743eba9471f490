# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 1: on-policy sampling
#
# Tajwar et al. 2024 ([arXiv:2404.14367](https://arxiv.org/abs/2404.14367), Sec. 4) on an 8-armed bandit.
# The reference policy puts 45% of its mass on arm 0 and 0.7% on arm 7. Two rewards:
#
# - **R1** (`task.reward=r1`) peaks at arm 7, where the reference rarely samples;
# - **R2** (`task.reward=r2`) peaks at arm 0, the reference's mode.
#
# *Offline* DPO learns from a fixed dataset of the reference's samples; *online* DPO samples from its current
# policy every round. (The rewards are named `r1` / `r2` here; the findings walkthrough, docs/findings.md, calls
# them `hard` / `easy`.)

# %%
import matplotlib.pyplot as plt
import seaborn as sns

import alignlab

sns.set_theme(style="whitegrid")
FAST = ["train.iterations=200", "num_seeds=2", "train.progress=false"]

# %% [markdown]
# `alignlab.sweep` runs every combination (the same code as `alignlab -m ...` on the command line) and returns
# the metrics rows of every run as one DataFrame.

# %%
runs = alignlab.sweep({"task.reward": ["r1", "r2"], "sampling": ["online", "offline"]}, "algo=dpo", *FAST)
runs[["task.reward", "sampling", "seed", "iteration", "eval/reward", "eval/kl_ref"]].tail()

# %%
grid = sns.relplot(
    data=runs, x="iteration", y="eval/reward", hue="sampling", col="task.reward", kind="line", errorbar="sd", height=3
)
plt.show()

# %%
final = runs[runs["iteration"] == runs["iteration"].max()]
table = final.groupby(["task.reward", "sampling"])[["eval/reward", "eval/p_optimal", "eval/kl_ref"]].mean()
table.round(3)

# %%
gap = table["eval/reward"].unstack()
print("online minus offline, final reward:", (gap["online"] - gap["offline"]).round(3).to_dict())

# %% [markdown]
# ## Questions
#
# 1. On R1, offline DPO's reward barely moves. How many times does arm 7 appear in 32 x 4 reference samples
#    (p = 0.007)? What can a loss on that dataset learn about arm 7?
# 2. On R2 offline is as good as online. What property of the reference makes the difference?
# 3. Change `algo=dpo` to `algo=ipo` or `algo=reinforce`: does the online/offline gap on R1 depend on the
#    objective? (The tier-1 grid in docs/tiers/bandit.md answers it for all 16.)
