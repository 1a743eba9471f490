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
# # Lesson 3: sample reuse and batch size
#
# Tajwar et al. 2024 ([arXiv:2404.14367](https://arxiv.org/abs/2404.14367), Sec. 5.3): each round draws B
# prompts x n samples from the current policy (`sampling.prompts_per_round`, `sampling.samples_per_prompt`) and
# takes T gradient steps on that batch (`sampling.updates_per_batch`). More reuse (larger T) costs fewer samples
# per update but trains on data that the policy has moved away from. Task reward `r1`, online sampling.

# %%
import matplotlib.pyplot as plt
import seaborn as sns

import alignlab

sns.set_theme(style="whitegrid")
FAST = ["train.iterations=150", "num_seeds=2", "train.progress=false", "task.reward=r1", "sampling=online"]

# %%
runs = alignlab.sweep({"algo": ["dpo", "ppo"], "sampling.updates_per_batch": [1, 4, 16]}, *FAST)
runs["samples drawn"] = runs["iteration"] * 8 * 4  # B x n per round
grid = sns.relplot(
    data=runs,
    x="samples drawn",
    y="eval/reward",
    hue="sampling.updates_per_batch",
    col="algo",
    kind="line",
    errorbar="sd",
    palette="viridis",
    height=3,
)
plt.show()

# %% [markdown]
# Now the batch size B at a fixed T = 1: the same number of rounds sees 4x more samples with B = 32.

# %%
batch = alignlab.sweep({"sampling.prompts_per_round": [2, 8, 32]}, "algo=dpo", *FAST)
batch["samples drawn"] = batch["iteration"] * batch["sampling.prompts_per_round"] * 4
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for ax, x in zip(axes, ["iteration", "samples drawn"], strict=True):
    sns.lineplot(data=batch, x=x, y="eval/reward", hue="sampling.prompts_per_round", errorbar="sd", ax=ax)
plt.show()

# %%
final = runs[runs["iteration"] == runs["iteration"].max()]
final.groupby(["algo", "sampling.updates_per_batch"])[["eval/reward", "eval/kl_ref"]].mean().round(3)

# %% [markdown]
# ## Questions
#
# 1. Per sample drawn, does T = 16 learn faster than T = 1? Per gradient step (`train/updates`)?
# 2. PPO clips its ratio pi / pi_old. Why does that matter more as T grows?
# 3. In the batch-size plot, which x-axis makes B = 2 look best, and which makes B = 32 look best? Which axis
#    is the cost on a language model?
