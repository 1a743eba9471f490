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
# # Lesson 4: semi-online DPO, the sync period s
#
# Lanchantin et al. 2025 ([arXiv:2506.21495](https://arxiv.org/abs/2506.21495)): sample from a frozen copy of
# the policy and refresh it every s updates (`sampling=semi_online sampling.sync_every=s`). s = 1 is online DPO;
# s = infinity is offline DPO; iterative DPO (Xu et al. 2023) is a large s. Task reward `r1`.

# %%
import matplotlib.pyplot as plt
import seaborn as sns

import alignlab

sns.set_theme(style="whitegrid")
FAST = ["train.iterations=200", "num_seeds=2", "train.progress=false", "task.reward=r1", "sampling=semi_online"]

# %%
runs = alignlab.sweep({"sampling.sync_every": [1, 8, 32, 128]}, "algo=dpo", *FAST)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
sns.lineplot(
    data=runs, x="iteration", y="eval/reward", hue="sampling.sync_every", palette="viridis", errorbar="sd", ax=axes[0]
)
sns.lineplot(
    data=runs, x="iteration", y="sampler/syncs", hue="sampling.sync_every", palette="viridis", errorbar=None, ax=axes[1]
)
axes[1].set(title="refreshes of the sampling policy")
plt.show()

# %%
final = runs[runs["iteration"] == runs["iteration"].max()]
final.groupby("sampling.sync_every")[["eval/reward", "eval/kl_ref", "sampler/syncs"]].mean().round(3)

# %% [markdown]
# ## Questions
#
# 1. The reward curve of s = 32 is a staircase. What happens at each step?
# 2. Between s = 1 and s = 8, how much reward is lost, and how many refreshes are saved? On a language model a
#    refresh means copying the weights to the generation server: when is s = 8 the better deal?
# 3. Predict the curve for s = 1000 (longer than the run), then run it.
