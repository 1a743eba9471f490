"""Exact values of the pure losses in alignlab.core.losses on small cases worked out by hand.

Every expected number is written out from the paper's equation with Python floats (math), never by calling
the function under test. Tensors are float64 so that a hand value and a tensor value agree to ~1e-12.
"""

from __future__ import annotations

import math

import pytest
import torch

from alignlab.core.losses import (
    clipped_surrogate_loss,
    cpo_loss,
    dpo_loss,
    gae,
    ipo_loss,
    kl_estimate,
    kto_loss,
    masked_mean,
    negative_gradient_loss,
    nll_loss,
    policy_gradient_loss,
    rwr_weights,
    value_loss,
)


def vec(*values: float, grad: bool = False) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=grad)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def close(actual: torch.Tensor, expected: list[float] | float) -> None:
    torch.testing.assert_close(actual.detach(), torch.as_tensor(expected, dtype=actual.dtype), rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------------------------------------
# DPO (Rafailov et al. 2023, eq. 7) and its conservative variant
# --------------------------------------------------------------------------------------------------------

# Three pairs with margins h = (log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l)):
#   pair 1: (-1.0 + 1.5) - (-2.0 + 1.5) =  1.0
#   pair 2: (-2.0 + 1.0) - (-1.5 + 2.0) = -1.5
#   pair 3: (-0.5 + 1.0) - (-3.0 + 2.0) =  1.5
POLICY_CHOSEN = (-1.0, -2.0, -0.5)
POLICY_REJECTED = (-2.0, -1.5, -3.0)
REFERENCE_CHOSEN = (-1.5, -1.0, -1.0)
REFERENCE_REJECTED = (-1.5, -2.0, -2.0)
MARGINS = (1.0, -1.5, 1.5)


def pair_tensors(grad: bool = False) -> tuple[torch.Tensor, ...]:
    return (
        vec(*POLICY_CHOSEN, grad=grad),
        vec(*POLICY_REJECTED, grad=grad),
        vec(*REFERENCE_CHOSEN, grad=grad),
        vec(*REFERENCE_REJECTED, grad=grad),
    )


def test_dpo_loss_is_minus_log_sigmoid_of_beta_times_margin():
    beta = 0.5
    losses, _, _ = dpo_loss(*pair_tensors(), beta=beta)
    close(losses, [-log_sigmoid(beta * h) for h in MARGINS])
    # The same numbers, written out: -log sigma(0.5), -log sigma(-0.75), -log sigma(0.75).
    close(losses, [math.log1p(math.exp(-0.5)), math.log1p(math.exp(0.75)), math.log1p(math.exp(-0.75))])


def test_dpo_loss_at_zero_margin_is_log_two_whatever_the_smoothing():
    zero = vec(-1.0, -3.0)
    for smoothing in (0.0, 0.1, 0.5):
        losses, _, _ = dpo_loss(zero, zero, zero, zero, beta=2.0, label_smoothing=smoothing)
        close(losses, [math.log(2.0), math.log(2.0)])


def test_dpo_loss_with_label_smoothing_mixes_both_labels():
    beta, eps = 0.5, 0.1
    losses, _, _ = dpo_loss(*pair_tensors(), beta=beta, label_smoothing=eps)
    expected = [-(1 - eps) * log_sigmoid(beta * h) - eps * log_sigmoid(-beta * h) for h in MARGINS]
    close(losses, expected)
    # Smoothing raises the loss of a correctly ordered pair and lowers that of a misordered one.
    plain, _, _ = dpo_loss(*pair_tensors(), beta=beta)
    assert losses[0] > plain[0] and losses[2] > plain[2]
    assert losses[1] < plain[1]


def test_dpo_loss_returns_detached_implicit_rewards():
    beta = 0.5
    _, chosen_rewards, rejected_rewards = dpo_loss(*pair_tensors(grad=True), beta=beta)
    # beta * (log pi - log pi_ref) for each completion.
    close(chosen_rewards, [0.5 * (-1.0 + 1.5), 0.5 * (-2.0 + 1.0), 0.5 * (-0.5 + 1.0)])
    close(rejected_rewards, [0.5 * (-2.0 + 1.5), 0.5 * (-1.5 + 2.0), 0.5 * (-3.0 + 2.0)])
    assert not chosen_rewards.requires_grad and not rejected_rewards.requires_grad
    close(chosen_rewards - rejected_rewards, [beta * h for h in MARGINS])


def test_dpo_gradient_is_minus_beta_sigmoid_of_minus_beta_margin():
    beta = 0.5
    policy_chosen, policy_rejected, reference_chosen, reference_rejected = pair_tensors(grad=True)
    losses, _, _ = dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta=beta)
    losses.sum().backward()
    weight = [beta * sigmoid(-beta * h) for h in MARGINS]
    close(policy_chosen.grad, [-w for w in weight])
    close(policy_rejected.grad, weight)
    # The reference enters with the opposite sign (if it were trainable).
    close(reference_chosen.grad, weight)
    close(reference_rejected.grad, [-w for w in weight])
    assert (policy_chosen.grad < 0).all() and (policy_rejected.grad > 0).all()


def test_dpo_gradient_with_label_smoothing():
    beta, eps = 0.5, 0.1
    policy_chosen, policy_rejected, reference_chosen, reference_rejected = pair_tensors(grad=True)
    losses, _, _ = dpo_loss(
        policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta=beta, label_smoothing=eps
    )
    losses.sum().backward()
    # d/dh [-(1-eps) log sigma(beta h) - eps log sigma(-beta h)]
    #   = -(1-eps) beta sigma(-beta h) + eps beta sigma(beta h)
    expected = [-(1 - eps) * beta * sigmoid(-beta * h) + eps * beta * sigmoid(beta * h) for h in MARGINS]
    close(policy_chosen.grad, expected)
    close(policy_rejected.grad, [-g for g in expected])


# --------------------------------------------------------------------------------------------------------
# IPO (Azar et al. 2023, eq. 17)
# --------------------------------------------------------------------------------------------------------


def test_ipo_loss_is_squared_distance_to_one_over_two_tau():
    tau = 0.25  # target margin 1 / (2 tau) = 2
    losses = ipo_loss(*pair_tensors(), tau=tau)
    close(losses, [(1.0 - 2.0) ** 2, (-1.5 - 2.0) ** 2, (1.5 - 2.0) ** 2])
    close(losses, [1.0, 12.25, 0.25])


@pytest.mark.parametrize("tau", [0.1, 0.25, 1.0])
def test_ipo_minimum_is_at_margin_one_over_two_tau(tau):
    target = 1.0 / (2.0 * tau)
    reference = vec(0.0, 0.0, 0.0)
    policy_rejected = vec(0.0, 0.0, 0.0, grad=True)
    # Margins just below, at, and just above the target.
    policy_chosen = vec(target - 0.1, target, target + 0.1, grad=True)
    losses = ipo_loss(policy_chosen, policy_rejected, reference, reference, tau=tau)
    close(losses, [0.01, 0.0, 0.01])
    losses.sum().backward()
    close(policy_chosen.grad, [2 * -0.1, 0.0, 2 * 0.1])
    close(policy_rejected.grad, [2 * 0.1, 0.0, -2 * 0.1])
    # Below the target, raising the chosen log-prob lowers the loss; above it, it raises the loss.
    assert policy_chosen.grad[0] < 0 < policy_chosen.grad[2]


# --------------------------------------------------------------------------------------------------------
# CPO (Xu et al. 2024): -log sigma(beta log pi(y_w) - beta log pi(y_l)) - log pi(y_w)
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("nll_weight", [1.0, 0.3, 0.0])
def test_cpo_loss_values_and_gradient(nll_weight):
    beta = 0.5
    chosen = vec(-1.0, -2.0, grad=True)
    rejected = vec(-2.0, -1.5, grad=True)
    losses = cpo_loss(chosen, rejected, beta=beta, nll_weight=nll_weight)
    # beta (log pi(y_w) - log pi(y_l)) = 0.5 * 1.0 and 0.5 * -0.5
    close(
        losses,
        [-log_sigmoid(0.5) + nll_weight * 1.0, -log_sigmoid(-0.25) + nll_weight * 2.0],
    )
    losses.sum().backward()
    close(chosen.grad, [-beta * sigmoid(-0.5) - nll_weight, -beta * sigmoid(0.25) - nll_weight])
    close(rejected.grad, [beta * sigmoid(-0.5), beta * sigmoid(0.25)])


# --------------------------------------------------------------------------------------------------------
# KTO (Ethayarajh et al. 2024, eq. 8)
# --------------------------------------------------------------------------------------------------------

# r = log pi - log pi_ref = [0.5, -0.5, -0.5, 0.5]; the first two are desirable, the last two undesirable.
KTO_POLICY = (-1.0, -2.0, -1.5, -0.5)
KTO_REFERENCE = (-1.5, -1.5, -1.0, -1.0)
KTO_DESIRABLE = (True, True, False, False)


def test_kto_loss_desirable_and_undesirable_values():
    beta, z0, lam_d, lam_u = 2.0, 0.2, 1.0, 1.5
    losses = kto_loss(
        vec(*KTO_POLICY),
        vec(*KTO_REFERENCE),
        torch.tensor(KTO_DESIRABLE),
        z0,
        beta,
        desirable_weight=lam_d,
        undesirable_weight=lam_u,
    )
    close(
        losses,
        [
            lam_d - lam_d * sigmoid(beta * (0.5 - z0)),  # desirable, r above z0: small loss
            lam_d - lam_d * sigmoid(beta * (-0.5 - z0)),  # desirable, r below z0: large loss
            lam_u - lam_u * sigmoid(beta * (z0 - -0.5)),  # undesirable, r below z0: small loss
            lam_u - lam_u * sigmoid(beta * (z0 - 0.5)),  # undesirable, r above z0: large loss
        ],
    )


def test_kto_loss_weights_scale_each_side():
    beta, z0 = 2.0, 0.2
    args = (vec(*KTO_POLICY), vec(*KTO_REFERENCE), torch.tensor(KTO_DESIRABLE), z0, beta)
    unit = kto_loss(*args)
    weighted = kto_loss(*args, desirable_weight=2.0, undesirable_weight=0.5)
    close(weighted, [2.0 * unit[0].item(), 2.0 * unit[1].item(), 0.5 * unit[2].item(), 0.5 * unit[3].item()])


def test_kto_reference_point_raises_desirable_and_lowers_undesirable_losses():
    beta = 2.0
    args = (vec(*KTO_POLICY), vec(*KTO_REFERENCE), torch.tensor(KTO_DESIRABLE))
    low = kto_loss(*args, 0.0, beta)
    high = kto_loss(*args, 0.5, beta)
    assert (high[:2] > low[:2]).all()
    assert (high[2:] < low[2:]).all()
    # A float and a 0-d tensor reference point are the same thing.
    close(kto_loss(*args, torch.tensor(0.5, dtype=torch.float64), beta), high.tolist())
    # z0 = 0.5 puts the first (desirable) and the fourth (undesirable) completion at the reference point.
    close(high[0], 1.0 - sigmoid(0.0))
    close(high[3], 1.0 - sigmoid(0.0))


def test_kto_gradient_pushes_desirable_up_and_undesirable_down():
    beta, z0, lam_d, lam_u = 2.0, 0.2, 1.0, 1.5
    policy = vec(*KTO_POLICY, grad=True)
    kto_loss(policy, vec(*KTO_REFERENCE), torch.tensor(KTO_DESIRABLE), z0, beta, lam_d, lam_u).sum().backward()

    def dsig(x: float) -> float:
        return sigmoid(x) * (1 - sigmoid(x))

    close(
        policy.grad,
        [
            -lam_d * beta * dsig(beta * (0.5 - z0)),
            -lam_d * beta * dsig(beta * (-0.5 - z0)),
            lam_u * beta * dsig(beta * (z0 + 0.5)),
            lam_u * beta * dsig(beta * (z0 - 0.5)),
        ],
    )
    assert (policy.grad[:2] < 0).all() and (policy.grad[2:] > 0).all()


# --------------------------------------------------------------------------------------------------------
# Likelihood losses
# --------------------------------------------------------------------------------------------------------


def test_nll_loss_without_and_with_weights():
    logps = vec(-1.0, -2.0, grad=True)
    close(nll_loss(logps), [1.0, 2.0])
    weighted = nll_loss(logps, vec(0.5, 2.0))
    close(weighted, [0.5, 4.0])
    weighted.sum().backward()
    close(logps.grad, [-0.5, -2.0])


def test_rwr_weights_plain_clipped_and_normalised():
    rewards = vec(0.0, 1.0, -1.0)
    beta = 0.5
    close(rwr_weights(rewards, beta), [1.0, math.exp(2.0), math.exp(-2.0)])
    close(rwr_weights(rewards, beta, max_weight=3.0), [1.0, 3.0, math.exp(-2.0)])
    total = 1.0 + math.exp(2.0) + math.exp(-2.0)
    normalised = rwr_weights(rewards, beta, normalize=True)
    close(normalised, [3 * 1.0 / total, 3 * math.exp(2.0) / total, 3 * math.exp(-2.0) / total])
    close(normalised.mean(), 1.0)


def test_rwr_normalised_weights_ignore_a_reward_shift_and_do_not_overflow():
    weights = rwr_weights(vec(1000.0, 1001.0), beta=1.0, normalize=True)
    close(weights, [2.0 / (1.0 + math.e), 2.0 * math.e / (1.0 + math.e)])
    close(weights.mean(), 1.0)


def test_negative_gradient_loss_values_and_gradient():
    alpha = 0.1
    best = vec(-1.0, -2.0, grad=True)
    negative = vec(-3.0, -0.5, grad=True)
    losses = negative_gradient_loss(best, negative, alpha)
    close(losses, [1.0 + 0.1 * -3.0, 2.0 + 0.1 * -0.5])
    losses.sum().backward()
    close(best.grad, [-1.0, -1.0])
    close(negative.grad, [alpha, alpha])


# --------------------------------------------------------------------------------------------------------
# Policy-gradient losses
# --------------------------------------------------------------------------------------------------------


def test_policy_gradient_loss_detaches_the_advantage():
    logps = vec(-1.0, -2.0, grad=True)
    advantages = vec(0.5, -1.5, grad=True)
    losses = policy_gradient_loss(logps, advantages)
    close(losses, [-0.5 * -1.0, 1.5 * -2.0])
    losses.sum().backward()
    close(logps.grad, [-0.5, 1.5])
    assert advantages.grad is None


def test_clipped_surrogate_loss_values_and_gradients():
    eps = 0.2
    old = vec(-1.0, -1.0, -1.0, -1.0, -1.0, grad=True)
    # ratios: 1.1 (inside), 1.5 (above 1 + eps), 0.5 (below 1 - eps), 1.5, 0.5
    ratios = (1.1, 1.5, 0.5, 1.5, 0.5)
    advantages = vec(2.0, 2.0, -1.0, -1.0, 2.0, grad=True)
    policy = vec(*[-1.0 + math.log(r) for r in ratios], grad=True)
    losses = clipped_surrogate_loss(policy, old, advantages, eps)
    close(
        losses,
        [
            -min(1.1 * 2.0, 1.1 * 2.0),  # inside the clip range
            -min(1.5 * 2.0, 1.2 * 2.0),  # A > 0, ratio > 1 + eps: clipped at 1.2
            -min(0.5 * -1.0, 0.8 * -1.0),  # A < 0, ratio < 1 - eps: clipped at 0.8
            -min(1.5 * -1.0, 1.2 * -1.0),  # A < 0, ratio > 1 + eps: the unclipped (pessimistic) term wins
            -min(0.5 * 2.0, 0.8 * 2.0),  # A > 0, ratio < 1 - eps: the unclipped (pessimistic) term wins
        ],
    )
    losses.sum().backward()
    # d/dlogpi of -ratio * A is -A * ratio where the unclipped term is active, 0 where the clipped one is.
    close(policy.grad, [-2.0 * 1.1, 0.0, 0.0, 1.0 * 1.5, -2.0 * 0.5])
    assert old.grad is None and advantages.grad is None


def test_clipped_surrogate_loss_broadcasts_a_sequence_advantage_over_tokens():
    policy = torch.zeros(2, 3, dtype=torch.float64)
    losses = clipped_surrogate_loss(policy, policy.clone(), vec(1.0, -2.0)[:, None], 0.2)
    close(losses, [[-1.0, -1.0, -1.0], [2.0, 2.0, 2.0]])


def test_value_loss_plain_and_clipped():
    values = vec(1.0, 2.0, 1.0, grad=True)
    returns = vec(0.5, 0.5, 2.0, grad=True)
    close(value_loss(values, returns), [0.5 * 0.5**2, 0.5 * 1.5**2, 0.5 * 1.0**2])

    old_values = vec(0.9, 1.0, 0.0)
    clipped = value_loss(values, returns, old_values, clip=0.2)
    # Clipped values: 0.9 + 0.1 (inside), 1.0 + 0.2, 0.0 + 0.2; the larger of the two errors is kept.
    close(
        clipped,
        [
            0.5 * max(0.5**2, (1.0 - 0.5) ** 2),
            0.5 * max(1.5**2, (1.2 - 0.5) ** 2),
            0.5 * max(1.0**2, (0.2 - 2.0) ** 2),
        ],
    )
    clipped[1:].sum().backward()
    # Element 2 uses the unclipped error (grad V - R = 1.5); element 3 the clipped one (no gradient).
    close(values.grad, [0.0, 1.5, 0.0])
    assert returns.grad is None
    # A clip without old values is no clip.
    close(value_loss(values, returns, clip=0.2), value_loss(values, returns).tolist())


def test_gae_three_steps_with_padding():
    gamma, lam = 0.9, 0.8
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.5, 2.0, 9.0]], dtype=torch.float64)
    values = torch.tensor([[0.5, 0.6, 0.7], [0.2, 0.4, 5.0]], dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
    advantages, returns = gae(rewards, values, mask, gamma, lam)

    # Row 1: full length, V past the end is 0.
    d2 = 1.0 + gamma * 0.0 - 0.7
    d1 = 0.0 + gamma * 0.7 - 0.6
    d0 = 0.0 + gamma * 0.6 - 0.5
    a2 = d2
    a1 = d1 + gamma * lam * a2
    a0 = d0 + gamma * lam * a1
    # Row 2: the third position is padding: its reward 9 and value 5 are ignored, A = R = 0 there.
    b1 = 2.0 + gamma * 0.0 - 0.4
    b0 = 0.5 + gamma * 0.4 - 0.2 + gamma * lam * b1
    close(advantages, [[a0, a1, a2], [b0, b1, 0.0]])
    close(advantages, [[0.21712, 0.246, 0.3], [1.812, 1.6, 0.0]])
    close(returns, [[a0 + 0.5, a1 + 0.6, a2 + 0.7], [b0 + 0.2, b1 + 0.4, 0.0]])
    assert not advantages.requires_grad and not returns.requires_grad


def test_gae_with_unit_gamma_and_lambda_is_returns_to_go_minus_value():
    rewards = torch.tensor([[1.0, -0.5, 2.0, 0.25], [0.5, 1.5, 0.0, 7.0]], dtype=torch.float64)
    values = torch.tensor([[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 3.0, 3.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    to_go = [[2.75, 1.75, 2.25, 0.25], [2.0, 1.5, 0.0, 0.0]]
    close(returns, to_go)
    close(advantages, [[2.75 - 0.1, 1.75 - 0.2, 2.25 - 0.3, 0.25 - 0.4], [2.0 - 1.0, 1.5 + 1.0, 0.0, 0.0]])


def test_gae_with_zero_lambda_is_the_td_error():
    rewards = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    values = torch.tensor([[0.5, 0.25]], dtype=torch.float64)
    advantages, _ = gae(rewards, values, torch.ones(1, 2, dtype=torch.float64), gamma=0.5, lam=0.0)
    close(advantages, [[1.0 + 0.5 * 0.25 - 0.5, 2.0 - 0.25]])


# --------------------------------------------------------------------------------------------------------
# KL estimators (Schulman 2020) and masked_mean
# --------------------------------------------------------------------------------------------------------


def test_kl_estimate_values():
    policy, reference = vec(-1.0, -2.0, -0.7), vec(-1.5, -1.0, -0.7)
    # log r = log pi_ref - log pi = [-0.5, 1.0, 0.0]
    close(kl_estimate(policy, reference, "k1"), [0.5, -1.0, 0.0])
    close(kl_estimate(policy, reference, "k2"), [0.5 * 0.25, 0.5 * 1.0, 0.0])
    close(
        kl_estimate(policy, reference, "k3"),
        [(math.exp(-0.5) - 1) + 0.5, (math.exp(1.0) - 1) - 1.0, 0.0],
    )


def test_k3_is_non_negative_where_k1_is_not():
    log_ratios = torch.linspace(-5, 5, 101, dtype=torch.float64)
    policy = torch.zeros_like(log_ratios)
    assert (kl_estimate(policy, log_ratios, "k3") >= 0).all()
    assert (kl_estimate(policy, log_ratios, "k1") < 0).any()


def test_k1_and_k3_expectations_equal_the_exact_kl_of_a_categorical():
    p = [0.5, 0.3, 0.2]
    q = [0.2, 0.5, 0.3]
    exact = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    policy = torch.log(vec(*p))
    reference = torch.log(vec(*q))
    weights = vec(*p)  # E_{y ~ pi}[k(y)], computed exactly over the three outcomes
    for estimator in ("k1", "k3"):
        mean = (weights * kl_estimate(policy, reference, estimator)).sum()
        assert mean.item() == pytest.approx(exact, rel=1e-12)
    # k2 is biased: its expectation is not the KL on distributions this far apart.
    k2 = (weights * kl_estimate(policy, reference, "k2")).sum().item()
    assert abs(k2 - exact) > 1e-3


def test_kl_estimate_rejects_an_unknown_estimator():
    with pytest.raises(ValueError, match="k4"):
        kl_estimate(vec(0.0), vec(0.0), "k4")


def test_masked_mean_over_all_and_along_a_dim():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    close(masked_mean(x, mask), (1.0 + 2.0 + 4.0) / 3)
    # A row with no position kept averages to 0, not NaN.
    close(masked_mean(x, mask, dim=1), [1.5, 4.0, 0.0])
    close(masked_mean(x, torch.zeros_like(mask)), 0.0)
