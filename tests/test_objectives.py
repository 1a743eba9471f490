"""Objectives on a tiny fake rollout: a bandit whose completions are arm ids, with one-token log-probs.

Each test builds a `Rollout` by hand, runs `prepare` and `total_loss`, and checks the targets it picked and
the loss value against numbers written out from the paper's equation with Python floats.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from alignlab.core.losses import dpo_loss
from alignlab.core.objectives import CPO, DPO, GRPO, IPO, KTO, PPO, RLOO, SFT, BestOfN, Reinforce, ReST, SuperHF
from alignlab.core.types import LogProbs, Rollout
from alignlab.errors import ConfigError

# Two prompts x three samples (arms 0..5).
# Prompt 0: best arm 1, worst arm 2; prompt 1: best arm 5, worst arm 4.
REWARDS = [0.5, 1.0, 0.0, 0.25, -1.0, 0.75]
POLICY = [-1.0, -0.8, -1.5, -1.2, -2.0, -0.9]  # log pi(arm) of the policy being trained
REFERENCE = [-1.1, -1.0, -1.1, -1.2, -1.2, -1.4]  # log pi_ref(arm)


def one_token(values: list[float] | torch.Tensor) -> LogProbs:
    tokens = torch.as_tensor(values, dtype=torch.float64).reshape(-1, 1)
    return LogProbs(tokens, torch.ones_like(tokens))


def make_rollout(
    rewards: list[float] = REWARDS,
    reference: list[float] = REFERENCE,
    old: list[float] | None = None,
    samples_per_prompt: int = 3,
) -> Rollout:
    count = len(rewards)
    return Rollout(
        prompts=[0] * count,
        completions=torch.arange(count),
        rewards=torch.tensor(rewards, dtype=torch.float64),
        samples_per_prompt=samples_per_prompt,
        ref_logps=one_token(reference),
        old_logps=None if old is None else one_token(old),
    )


def policy_logps(policy: torch.Tensor, completions: torch.Tensor) -> LogProbs:
    """What a bandit policy returns for the given arms: log pi(arm) as a one-token LogProbs."""
    tokens = policy[completions][:, None]
    return LogProbs(tokens, torch.ones_like(tokens))


def trainable_policy(values: list[float] = POLICY) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=True)


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def k3(log_r: float) -> float:
    return math.exp(log_r) - 1.0 - log_r


# --------------------------------------------------------------------------------------------------------
# Preference objectives
# --------------------------------------------------------------------------------------------------------


def test_dpo_prepare_pairs_each_prompts_best_with_its_worst():
    targets = DPO().prepare(make_rollout(), iteration=0)
    # Chosen completions first, then rejected ones.
    assert targets.rollout.completions.tolist() == [1, 5, 2, 4]
    torch.testing.assert_close(
        targets.rollout.ref_logps.tokens[:, 0], torch.tensor([-1.0, -1.4, -1.1, -1.2], dtype=torch.float64)
    )
    assert targets.metrics["pairs/count"] == 2.0
    assert targets.metrics["pairs/skipped_fraction"] == 0.0


def test_dpo_total_loss_is_dpo_loss_on_the_best_vs_worst_pairs():
    beta = 0.5
    objective = DPO(beta=beta)
    targets = objective.prepare(make_rollout(), iteration=0)
    policy = trainable_policy()
    loss, metrics = objective.total_loss(targets, policy_logps(policy, targets.rollout.completions))
    # h = (log pi - log pi_ref)(chosen) - (log pi - log pi_ref)(rejected):
    #   prompt 0: (-0.8 + 1.0) - (-1.5 + 1.1) = 0.6;   prompt 1: (-0.9 + 1.4) - (-2.0 + 1.2) = 1.3
    margins = [0.6, 1.3]
    assert loss.item() == pytest.approx(sum(-log_sigmoid(beta * h) for h in margins) / 2, rel=1e-9)
    losses, _, _ = dpo_loss(
        policy[[1, 5]],
        policy[[2, 4]],
        torch.tensor([-1.0, -1.4], dtype=torch.float64),
        torch.tensor([-1.1, -1.2], dtype=torch.float64),
        beta,
    )
    torch.testing.assert_close(loss, losses.mean())
    assert metrics["rewards/accuracy"].item() == 1.0
    assert metrics["rewards/margin"].item() == pytest.approx(beta * sum(margins) / 2, rel=1e-9)
    loss.backward()
    # Only the four paired arms get a gradient, chosen down-hill (negative), rejected up-hill (positive).
    weights = [beta * sigmoid(-beta * h) / 2 for h in margins]
    torch.testing.assert_close(
        policy.grad,
        torch.tensor([0.0, -weights[0], weights[0], 0.0, weights[1], -weights[1]], dtype=torch.float64),
    )


def test_pair_objectives_skip_a_round_where_every_prompt_ties():
    rollout = make_rollout(rewards=[0.5] * 6)
    for objective in (DPO(), IPO(), CPO(), SFT()):
        assert objective.prepare(rollout, iteration=0) is None


def test_kto_labels_samples_above_their_prompt_mean_and_drops_tied_prompts():
    # A third prompt (arms 6..8) whose samples all tie.
    rollout = make_rollout(rewards=REWARDS + [0.5, 0.5, 0.5], reference=REFERENCE + [-1.0, -1.0, -1.0])
    targets = KTO().prepare(rollout, iteration=0)
    assert targets.rollout.completions.tolist() == [0, 1, 2, 3, 4, 5]
    # Prompt 0 mean 0.5 (arm 0 sits on it, not above); prompt 1 mean 0.0.
    assert targets.tensors["desirable"].tolist() == [False, True, False, True, False, True]
    assert targets.metrics["pairs/skipped_fraction"] == pytest.approx(1 / 3)


def test_kto_total_loss_with_a_detached_batch_reference_point():
    beta = 1.0
    objective = KTO(beta=beta, desirable_weight=1.0, undesirable_weight=2.0)
    targets = objective.prepare(make_rollout(), iteration=0)
    log_ratios = [0.5, 0.25, -0.25, 0.75, -0.5, 1.0]
    policy = trainable_policy([ref + r for ref, r in zip(REFERENCE, log_ratios, strict=True)])
    loss, metrics = objective.total_loss(targets, policy_logps(policy, targets.rollout.completions))
    z0 = max(0.0, sum(log_ratios) / 6)  # 1.75 / 6
    desirable = [False, True, False, True, False, True]
    per_sample = [
        1.0 - sigmoid(beta * (r - z0)) if d else 2.0 - 2.0 * sigmoid(beta * (z0 - r))
        for r, d in zip(log_ratios, desirable, strict=True)
    ]
    assert loss.item() == pytest.approx(sum(per_sample) / 6, rel=1e-9)
    assert metrics["kto/reference_point"].item() == pytest.approx(z0, rel=1e-9)
    loss.backward()
    # z0 is a constant: the gradient is that of the per-sample value function alone.
    grads = [
        (-1.0 if d else 2.0) * beta * sigmoid(beta * (r - z0)) * (1 - sigmoid(beta * (r - z0))) / 6
        for r, d in zip(log_ratios, desirable, strict=True)
    ]
    torch.testing.assert_close(policy.grad, torch.tensor(grads, dtype=torch.float64))


def test_kto_reference_point_is_clamped_at_zero():
    objective = KTO(beta=1.0)
    targets = objective.prepare(make_rollout(), iteration=0)
    # The policy is below the reference on average: z0 = max(0, mean log-ratio) = 0.
    policy = trainable_policy([ref - 0.5 for ref in REFERENCE])
    _, metrics = objective.total_loss(targets, policy_logps(policy, targets.rollout.completions))
    assert metrics["kto/reference_point"].item() == 0.0


# --------------------------------------------------------------------------------------------------------
# Likelihood objectives
# --------------------------------------------------------------------------------------------------------


def test_best_of_n_keeps_the_best_sample_of_each_prompt():
    objective = BestOfN()
    targets = objective.prepare(make_rollout(), iteration=0)
    assert targets.rollout.completions.tolist() == [1, 5]
    loss, _ = objective.total_loss(targets, policy_logps(trainable_policy(), targets.rollout.completions))
    assert loss.item() == pytest.approx((0.8 + 0.9) / 2, rel=1e-9)


@pytest.mark.parametrize(
    ("negative", "negatives"),
    [("worst", [[2], [4]]), ("worse", [[0, 2], [3, 4]])],
)
def test_best_of_n_with_a_negative_gradient(negative, negatives):
    alpha = 0.1
    objective = BestOfN(negative=negative, negative_weight=alpha)
    objective.check(3)
    targets = objective.prepare(make_rollout(), iteration=0)
    policy = trainable_policy()
    loss, _ = objective.total_loss(targets, policy_logps(policy, targets.rollout.completions))
    # Per prompt: -log pi(best) + alpha * (mean log pi of its negatives).
    per_prompt = [
        -POLICY[best] + alpha * sum(POLICY[i] for i in group) / len(group)
        for best, group in zip([1, 5], negatives, strict=True)
    ]
    if negative == "worst":
        assert per_prompt == pytest.approx([0.8 + 0.1 * -1.5, 0.9 + 0.1 * -2.0])
    else:
        assert per_prompt == pytest.approx([0.8 + 0.1 * -1.25, 0.9 + 0.1 * -1.6])
    assert loss.item() == pytest.approx(sum(per_prompt) / 2, rel=1e-9)
    loss.backward()
    expected = [0.0] * 6
    for best, group in zip([1, 5], negatives, strict=True):
        expected[best] = -1.0 / 2
        for i in group:
            expected[i] = alpha / len(group) / 2
    torch.testing.assert_close(policy.grad, torch.tensor(expected, dtype=torch.float64))


TIED_FIRST_PROMPT = [0.5, 0.5, 0.5, 0.25, -1.0, 0.75]  # prompt 0 (arms 0..2) all tie; prompt 1 as before


def test_best_of_n_worst_negative_of_an_all_tie_prompt_is_empty():
    objective = BestOfN(negative="worst", negative_weight=0.1)
    targets = objective.prepare(make_rollout(rewards=TIED_FIRST_PROMPT), iteration=0)
    loss, _ = objective.total_loss(targets, policy_logps(trainable_policy(), targets.rollout.completions))
    # Prompt 0: best = first of the tie (arm 0), no negative. Prompt 1: best arm 5, worst arm 4.
    assert loss.item() == pytest.approx((1.0 + (0.9 + 0.1 * -2.0)) / 2, rel=1e-9)


def test_best_of_n_worse_negative_of_an_all_tie_prompt_is_empty():
    """BUG (demonstrated, not fixed): BestOfN.prepare says "a prompt whose samples all tie has no negative",
    which holds for negative=worst but not for negative=worse. `worse_than_best` marks every sample but the
    argmax *index*, so on an all-tie prompt the samples that tie with the "best" (arms 1 and 2) are pushed
    down with weight alpha / 2 each, and arm 0 is pulled up only because it comes first. Expected 0.87;
    the code gives 0.8125 (prompt 0 contributes 1.0 + 0.1 * (-0.8 - 1.5) / 2 = 0.885 instead of 1.0)."""
    objective = BestOfN(negative="worse", negative_weight=0.1)
    targets = objective.prepare(make_rollout(rewards=TIED_FIRST_PROMPT), iteration=0)
    assert targets.tensors["negative_weight"][:3].tolist() == [0.0, 0.0, 0.0]
    loss, _ = objective.total_loss(targets, policy_logps(trainable_policy(), targets.rollout.completions))
    # Prompt 0: -log pi(arm 0) = 1.0 and no negative. Prompt 1: best arm 5, negatives arms 3 and 4.
    assert loss.item() == pytest.approx((1.0 + (0.9 + 0.1 * (-1.2 - 2.0) / 2)) / 2, rel=1e-9)


def test_superhf_adds_kl_coef_times_k3_of_the_best_samples():
    objective = SuperHF(kl_coef=0.1)
    objective.check(3)
    targets = objective.prepare(make_rollout(), iteration=0)
    logps = policy_logps(trainable_policy(), targets.rollout.completions)
    loss, metrics = objective.total_loss(targets, logps)
    # Best arms 1 and 5: log r = log pi_ref - log pi = -1.0 + 0.8 and -1.4 + 0.9.
    kl = (k3(-0.2) + k3(-0.5)) / 2
    assert metrics["loss/kl"].item() == pytest.approx(kl, rel=1e-9)
    assert loss.item() == pytest.approx((0.8 + 0.9) / 2 + 0.1 * kl, rel=1e-9)


@pytest.mark.parametrize(
    ("iteration", "threshold"),
    [(0, 0.0), (9, 0.0), (10, 0.25), (19, 0.25), (20, 0.5), (1000, 0.5)],
)
def test_rest_threshold_rises_every_iterations_per_threshold(iteration, threshold):
    objective = ReST(thresholds=[0.0, 0.25, 0.5], iterations_per_threshold=10)
    assert objective.threshold(iteration) == threshold


def test_rest_prepare_keeps_samples_at_or_above_the_current_threshold():
    objective = ReST(thresholds=[0.0, 0.25, 0.8], iterations_per_threshold=10)
    targets = objective.prepare(make_rollout(), iteration=15)
    assert targets.rollout.completions.tolist() == [0, 1, 3, 5]  # rewards 0.5, 1.0, 0.25, 0.75
    assert targets.metrics["rest/threshold"] == 0.25
    assert targets.metrics["pairs/skipped_fraction"] == pytest.approx(2 / 6)
    assert objective.prepare(make_rollout(), iteration=20).rollout.completions.tolist() == [1]
    # Nothing clears the threshold: the round has no targets.
    assert objective.prepare(make_rollout(rewards=[0.0] * 6), iteration=20) is None


# --------------------------------------------------------------------------------------------------------
# Policy-gradient objectives
# --------------------------------------------------------------------------------------------------------


def test_grpo_kl_term_is_the_per_token_mean_over_each_completion():
    kl_coef = 0.04
    objective = GRPO(kl_coef=kl_coef)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
    policy = torch.tensor([[-1.0, -0.5, -2.0], [-0.3, -1.2, 0.0]], dtype=torch.float64, requires_grad=True)
    # The padding position of the reference holds garbage that must not count.
    reference = torch.tensor([[-1.2, -0.5, -1.0], [-0.6, -1.0, -4.0]], dtype=torch.float64)
    rollout = Rollout(
        prompts=[0, 0],
        completions=torch.arange(2),
        rewards=torch.tensor([1.0, 0.0], dtype=torch.float64),
        samples_per_prompt=2,
        ref_logps=LogProbs(reference, mask),
        old_logps=LogProbs(policy.detach().clone(), mask),
    )
    targets = objective.prepare(rollout, iteration=0)
    # Rewards 1 and 0: mean 0.5, population std 0.5.
    torch.testing.assert_close(
        targets.tensors["advantages"],
        torch.tensor([0.5 / (0.5 + 1e-6), -0.5 / (0.5 + 1e-6)], dtype=torch.float64),
    )
    loss, metrics = objective.total_loss(targets, LogProbs(policy, mask))
    # log r = log pi_ref - log pi per token: [-0.2, 0.0, 1.0] and [-0.3, 0.2] (third token is padding).
    kl = ((k3(-0.2) + k3(0.0) + k3(1.0)) / 3 + (k3(-0.3) + k3(0.2)) / 2) / 2
    summed = ((k3(-0.2) + k3(0.0) + k3(1.0)) + (k3(-0.3) + k3(0.2))) / 2
    assert metrics["loss/kl"].item() == pytest.approx(kl, rel=1e-9)
    assert metrics["loss/kl"].item() != pytest.approx(summed, rel=1e-3)
    # The ratio is 1 and the two advantages cancel: the surrogate term is 0, the loss is the KL term alone.
    assert metrics["loss/policy"].item() == pytest.approx(0.0, abs=1e-12)
    assert loss.item() == pytest.approx(kl_coef * kl, rel=1e-9)


class ConstantValue(nn.Module):
    """A value model V(prompt, completion prefix) that answers `value` at every position."""

    def __init__(self, value: float, length: int = 1):
        super().__init__()
        self.value = value
        self.length = length
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, prompts: list, completions: torch.Tensor) -> torch.Tensor:
        return torch.full((len(prompts), self.length), self.value, dtype=torch.float64) + self.bias


class ValueTask:
    def __init__(self, value_model: nn.Module):
        self.value_model = value_model

    def make_value_model(self) -> nn.Module:
        return self.value_model


def test_ppo_prepare_gives_hand_computed_gae_on_one_token():
    kl_coef, value = 0.05, 0.25
    objective = PPO(whiten_advantages=False, kl_coef=kl_coef, kl_estimator="k1", gamma=0.9, lam=0.95)
    objective.check(1)
    objective.setup(ValueTask(ConstantValue(value)))
    old = [-1.0, -0.5, -2.0, -0.1]
    reference = [-1.2, -0.5, -1.0, -0.3]
    rewards = [1.0, 0.0, 0.5, -0.5]
    rollout = make_rollout(rewards=rewards, reference=reference, old=old, samples_per_prompt=1)
    targets = objective.prepare(rollout, iteration=0)
    # One token: the reward sits on it, minus kl_coef * k1 = kl_coef * (log pi_old - log pi_ref);
    # nothing follows, so A = r - kl_coef * k1 - V and R = A + V whatever gamma and lambda are.
    shaped = [r - kl_coef * (o - ref) for r, o, ref in zip(rewards, old, reference, strict=True)]
    expected = [[s - value] for s in shaped]
    torch.testing.assert_close(targets.tensors["advantages"], torch.tensor(expected, dtype=torch.float64))
    returns = torch.tensor([[s] for s in shaped], dtype=torch.float64)
    torch.testing.assert_close(targets.tensors["returns"], returns)
    torch.testing.assert_close(targets.tensors["old_values"], torch.full((4, 1), value, dtype=torch.float64))


def test_ppo_prepare_puts_the_reward_on_the_last_token_of_each_completion():
    value, gamma, lam = 0.25, 1.0, 0.95
    objective = PPO(whiten_advantages=False, kl_coef=0.0, gamma=gamma, lam=lam)
    objective.setup(ValueTask(ConstantValue(value, length=2)))
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    rollout = Rollout(
        prompts=[0, 0],
        completions=torch.arange(2),
        rewards=torch.tensor([1.0, 0.5], dtype=torch.float64),
        samples_per_prompt=1,
        old_logps=LogProbs(torch.zeros(2, 2, dtype=torch.float64), mask),
    )
    targets = objective.prepare(rollout, iteration=0)
    # Row 0: delta_1 = 1 - V, delta_0 = 0 + gamma V - V = 0. Row 1 ends after one token: A_0 = 0.5 - V.
    expected = [[0.0 + gamma * lam * (1.0 - value), 1.0 - value], [0.5 - value, 0.0]]
    torch.testing.assert_close(targets.tensors["advantages"], torch.tensor(expected, dtype=torch.float64))


def test_ppo_whitened_advantages_have_zero_mean_and_unit_std():
    objective = PPO(whiten_advantages=True, kl_coef=0.0)
    objective.setup(ValueTask(ConstantValue(0.25)))
    rollout = make_rollout(rewards=[1.0, 0.0, 0.5, -0.5], reference=[0.0] * 4, old=[0.0] * 4, samples_per_prompt=1)
    advantages = objective.prepare(rollout, iteration=0).tensors["advantages"]
    assert advantages.mean().item() == pytest.approx(0.0, abs=1e-9)
    assert advantages.pow(2).mean().item() == pytest.approx(1.0, rel=1e-6)


def test_rloo_prepare_uses_leave_one_out_advantages():
    targets = RLOO().prepare(make_rollout(), iteration=0)
    expected = [0.5 - 0.5, 1.0 - 0.25, 0.0 - 0.75, 0.25 + 0.125, -1.0 - 0.5, 0.75 + 0.375]
    torch.testing.assert_close(targets.tensors["advantages"], torch.tensor(expected, dtype=torch.float64))


# --------------------------------------------------------------------------------------------------------
# Configuration checks: an impossible combination raises ConfigError naming the fix
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("objective", [DPO(), IPO(), CPO(), SFT(), KTO(), BestOfN(), RLOO(), GRPO()])
def test_group_objectives_need_two_samples_per_prompt(objective):
    with pytest.raises(ConfigError, match="Fix:") as error:
        objective.check(1)
    assert "samples_per_prompt" in str(error.value)
    objective.check(2)


@pytest.mark.parametrize("objective", [DPO(kl_coef=0.1, kl_in="reward"), KTO(kl_coef=0.1, kl_in="reward")])
def test_preference_objectives_have_no_reward_for_the_kl_anchor(objective):
    with pytest.raises(ConfigError, match="Fix:.*kl_in=loss"):
        objective.check(2)


def test_policy_gradient_objectives_accept_the_kl_anchor_in_the_reward():
    Reinforce(kl_coef=0.1, kl_in="reward").check(1)
    GRPO(kl_in="reward").check(2)
    PPO().check(1)


@pytest.mark.parametrize("objective", [DPO(kl_estimator="k4"), GRPO(kl_estimator="kl"), PPO(kl_estimator="")])
def test_an_unknown_kl_estimator_is_a_config_error(objective):
    with pytest.raises(ConfigError, match="Fix:.*k1, k2, k3"):
        objective.check(4)


@pytest.mark.parametrize(
    "objective",
    [
        DPO(pairs="some"),
        DPO(kl_in="elsewhere"),
        DPO(kl_coef=-0.1),
        BestOfN(negative="bad"),
        BestOfN(negative="worst", keep_top=2),
        SuperHF(kl_coef=0.0),
        ReST(thresholds=[0.5, 0.25]),
        Reinforce(baseline="median"),
    ],
)
def test_other_invalid_settings_are_config_errors(objective):
    with pytest.raises(ConfigError, match="Fix:"):
        objective.check(4)
