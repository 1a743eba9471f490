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
# # Lesson 2: negative gradients
#
# Tajwar et al. 2024 ([arXiv:2404.14367](https://arxiv.org/abs/2404.14367), Sec. 5.2). Best-of-N is supervised
# learning on the best of n samples: it only pushes *up*. Its variants (`best_of_n_neg_worst`,
# `best_of_n_neg_worse`) and DPO also push *down* the worse samples: a negative gradient.
# We watch the policy's log-probabilities of the chosen and the rejected samples (task reward `r1`).

# %%
import matplotlib.pyplot as plt
import seaborn as sns

import alignlab

sns.set_theme(style="whitegrid")
FAST = ["train.iterations=200", "num_seeds=2", "train.progress=false", "task.reward=r1"]

# %%
runs = alignlab.sweep({"algo": ["best_of_n", "best_of_n_neg_worst", "dpo"]}, *FAST)
long = runs.melt(
    id_vars=["algo", "seed", "iteration"],
    value_vars=["logps/chosen", "logps/rejected"],
    var_name="sample",
    value_name="log-prob",
).dropna()

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
sns.lineplot(data=runs, x="iteration", y="eval/reward", hue="algo", errorbar="sd", ax=axes[0])
axes[0].set(title="expected reward")
sns.lineplot(data=long, x="iteration", y="log-prob", hue="algo", style="sample", errorbar=None, ax=axes[1])
axes[1].set(title="log-probs of chosen (solid) and rejected (dashed)")
plt.show()

# %%
final = runs[runs["iteration"] == runs["iteration"].max()]
final.groupby("algo")[["eval/reward", "logps/chosen", "logps/rejected", "eval/entropy"]].mean().round(3)

# %% [markdown]
# ## Questions
#
# 1. Best-of-N has no `logps/rejected` column. Why not, and what does that say about its gradient?
# 2. With a negative gradient, where does the probability mass taken from the rejected arms go? Compare
#    `eval/entropy` across the three objectives.
# 3. DPO's chosen log-prob can *fall* while its margin grows. Find an iteration where that happens in `runs`.
