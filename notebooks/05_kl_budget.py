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
# # Lesson 5: compare at a KL budget, not at a beta
#
# Tang et al. 2024 ([arXiv:2405.08448](https://arxiv.org/abs/2405.08448)): online and offline methods spend
# their KL divergence from the reference differently, so the same regularisation strength beta is not a fair
# comparison. Sweep beta for online and offline DPO and plot the final reward against the final
# KL(pi || pi_ref). Task reward `r1`.

# %%
import matplotlib.pyplot as plt
import seaborn as sns

import alignlab

sns.set_theme(style="whitegrid")
FAST = ["train.iterations=200", "num_seeds=2", "train.progress=false", "task.reward=r1", "algo=dpo"]

# %%
runs = alignlab.sweep({"sampling": ["online", "offline"], "algo.beta": [0.03, 0.3, 3.0]}, *FAST)
final = runs[runs["iteration"] == runs["iteration"].max()]
fig, ax = plt.subplots(figsize=(6, 4))
sns.scatterplot(data=final, x="eval/kl_ref", y="eval/reward", hue="sampling", style="algo.beta", s=70, ax=ax)
ax.set(xlabel="KL(pi || pi_ref)", ylabel="final expected reward")
plt.show()

# %%
table = final.groupby(["sampling", "algo.beta"])[["eval/kl_ref", "eval/reward"]].mean()
table.round(3)

# %%
budget = table["eval/kl_ref"].xs("offline").max()
online = table.xs("online")
within = online[online["eval/kl_ref"] <= budget]
print(f"offline DPO spends up to {budget:.2f} nats; online DPO within that budget:")
within.round(3)

# %% [markdown]
# ## Questions
#
# 1. Which beta of online DPO spends about as much KL as offline DPO? Compare their rewards there.
# 2. Offline DPO moves away from the reference without moving towards the optimum. Where does its KL go?
#    (Plot `logps/rejected` over iterations.)
# 3. On `task.reward=r2`, does the conclusion change? Why?
