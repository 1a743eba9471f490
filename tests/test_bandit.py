"""Tier 1: the bandit's exact quantities, and does it learn."""

import math

import pytest
import torch

from alignlab.core.objectives import (
    CPO,
    DPO,
    GRPO,
    IPO,
    KTO,
    PPO,
    RAFT,
    RLOO,
    RWR,
    SFT,
    BestOfN,
    Reinforce,
    ReST,
    SuperHF,
)
from alignlab.core.sampling import SamplingConfig
from alignlab.core.train import TrainConfig, train
from alignlab.errors import ConfigError, RewardError
from bandits import BanditTask, cauchy_tanh_histogram

ONLINE = SamplingConfig(name="online", sync_every=1)
OFFLINE = SamplingConfig(name="offline", sync_every=None)
TRAIN = TrainConfig(iterations=300, lr=0.05, progress=False)

ALL_OBJECTIVES = {
    "sft": SFT(),
    "best_of_n": BestOfN(),
    "best_of_n_neg_worst": BestOfN(negative="worst"),
    "best_of_n_neg_worse": BestOfN(negative="worse"),
    "raft": RAFT(),
    "rest": ReST(),
    "rwr": RWR(),
    "superhf": SuperHF(),
    "reinforce": Reinforce(),
    "rloo": RLOO(),
    "grpo": GRPO(),
    "ppo": PPO(),
    "dpo": DPO(),
    "ipo": IPO(),
    "kto": KTO(),
    "cpo": CPO(),
}


def test_paper_reference_is_the_exact_cauchy_tanh_histogram():
    probs = cauchy_tanh_histogram(100, loc=-0.7, scale=0.4)
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-12)
    # Bin 15 covers tanh(X) in [-0.7, -0.68]: the Cauchy CDF evaluated at atanh of the edges.
    edges = (-0.7, -0.68)
    cdf = [0.5 + math.atan((math.atanh(e) + 0.7) / 0.4) / math.pi for e in edges]
    assert probs[15].item() == pytest.approx(cdf[1] - cdf[0], rel=1e-9)
    task = BanditTask(num_arms=100, reference="cauchy_tanh", r1_peak=70, r2_peak=20, width=10.0)
    assert task.ref_probs[70] < 0.01 < task.ref_probs[20], "R1's peak is unlikely, R2's likely"


def test_exact_evaluation_matches_hand_computation():
    task = BanditTask(num_arms=4, skew=1.0, r1_peak=3, width=1.0, optimum_beta=0.5)
    ref = torch.softmax(-torch.arange(4.0, dtype=torch.float64), 0)
    reward = torch.exp(-((torch.arange(4.0, dtype=torch.float64) - 3) ** 2))
    ev = task.evaluate(task.make_policy())
    assert ev["reward"] == pytest.approx(float((ref * reward).sum()), rel=1e-6)
    assert ev["kl_ref"] == pytest.approx(0.0, abs=1e-6)
    assert ev["p_optimal"] == pytest.approx(float(ref[3]), rel=1e-6)
    optimum = ref * torch.exp(reward / 0.5)
    optimum /= optimum.sum()
    assert ev["tv_to_optimum"] == pytest.approx(float(0.5 * (ref - optimum).abs().sum()), rel=1e-5)


def test_bad_bandit_settings_name_the_fix():
    with pytest.raises(ConfigError, match="Fix: use 0..7"):
        BanditTask(r1_peak=9)
    with pytest.raises(ConfigError, match="Fix: use one of r1, r2"):
        BanditTask(reward="r3")


def test_a_reward_that_returns_nan_stops_the_run():
    class NaNBandit(BanditTask):
        def reward(self, prompts, completions):
            r = super().reward(prompts, completions)
            r[0] = float("nan")
            return r

    with pytest.raises(RewardError, match="NaN or inf for 1 of 32 completions.*Fix:"):
        train(NaNBandit(), DPO(), ONLINE, TrainConfig(iterations=3, lr=0.05, progress=False))


@pytest.mark.parametrize("name", list(ALL_OBJECTIVES))
def test_every_objective_raises_the_reward_on_r2(name):
    """Online, every objective closes most of the gap to the best arm (0.64 -> above 0.89). Offline, every
    one improves too; PPO and GRPO least, because their ratio is clipped around the policy that produced the
    data (the reference), which is the trust region doing its job."""
    task = BanditTask(reward="r2")
    before = task.evaluate(task.make_policy())["reward"]
    online, _, _ = train(task, ALL_OBJECTIVES[name], ONLINE, TRAIN, seed=0)
    offline, _, _ = train(task, ALL_OBJECTIVES[name], OFFLINE, TRAIN, seed=0)
    assert online["reward"] > before + 0.25, (before, online["reward"])
    assert offline["reward"] > before + 0.05, (before, offline["reward"])


@pytest.mark.parametrize("name", ["dpo", "ipo", "ppo", "reinforce"])
def test_online_beats_offline_on_r1_across_seeds(name):
    task = BanditTask(reward="r1")
    online = [train(task, ALL_OBJECTIVES[name], ONLINE, TRAIN, seed=s)[0]["reward"] for s in range(3)]
    offline = [train(task, ALL_OBJECTIVES[name], OFFLINE, TRAIN, seed=s)[0]["reward"] for s in range(3)]
    assert min(online) > max(offline) + 0.1, (online, offline)
    assert sum(online) / 3 > sum(offline) / 3 + 0.25


@pytest.mark.parametrize("objective", [DPO(beta=0.1), KTO(beta=0.1)], ids=["dpo", "kto"])
def test_online_preference_optimisation_reaches_the_kl_regularised_optimum(objective):
    task = BanditTask(reward="r1", optimum_beta=0.1)
    start = task.evaluate(task.make_policy())["tv_to_optimum"]
    evaluation, _, _ = train(task, objective, ONLINE, TRAIN, seed=0)
    assert start > 0.9
    assert evaluation["tv_to_optimum"] < 0.1, "pi approaches pi* = pi_ref exp(r / beta) / Z"


def test_dpo_margin_grows_while_chosen_and_rejected_log_probs_can_both_fall():
    """Tajwar et al.'s observation, visible in the metrics: offline on R2 the margin rises while both fall."""
    task = BanditTask(reward="r2")
    _, rows, _ = train(task, DPO(beta=0.1), OFFLINE, TrainConfig(iterations=150, lr=0.05, progress=False), seed=0)
    early = [r for r in rows[:20] if "logps/margin" in r]
    late = [r for r in rows[-20:] if "logps/margin" in r]

    def mean(rs, key):
        return sum(r[key] for r in rs) / len(rs)

    assert mean(late, "logps/margin") > mean(early, "logps/margin") + 1.0
    assert mean(late, "logps/rejected") < mean(early, "logps/rejected")
