"""Every loss of alignlab, each written once as a pure function of log-probability tensors.

Conventions: `*_logps` are sequence log-probabilities log pi(y|x) of shape [N] (the sum of token log-probs),
except where a function says "per token" ([N, L] with a mask). Each function returns per-example losses
(callers take the mean) so that tests can check every element against the paper's equation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# --------------------------------------------------------------------------------------------------------
# Contrastive preference losses (pairs: chosen y_w, rejected y_l)
# --------------------------------------------------------------------------------------------------------


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    beta: float,
    label_smoothing: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Direct Preference Optimization, Rafailov et al. 2023 (arXiv:2305.18290), eq. 7:

        L = -log sigma( beta * [ (log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l)) ] )

    With `label_smoothing` eps (conservative DPO) the label is flipped with probability eps:
        L = -(1 - eps) log sigma(beta h) - eps log sigma(-beta h).

    Returns (losses [N], chosen implicit rewards [N], rejected implicit rewards [N]); the implicit reward of
    a completion is beta * (log pi - log pi_ref), detached.
    """
    chosen_logratio = policy_chosen_logps - reference_chosen_logps
    rejected_logratio = policy_rejected_logps - reference_rejected_logps
    h = chosen_logratio - rejected_logratio
    losses = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    return losses, beta * chosen_logratio.detach(), beta * rejected_logratio.detach()


def ipo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    tau: float,
) -> Tensor:
    """Identity Preference Optimization, Azar et al. 2023 (arXiv:2310.12036), eq. 17:

        L = ( h - 1 / (2 tau) )^2,   h = log[pi(y_w) pi_ref(y_l)] - log[pi(y_l) pi_ref(y_w)]

    The regression target 1/(2 tau) bounds the margin, so IPO does not push a deterministic preference to
    an infinite margin as DPO does.
    """
    h = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return (h - 1.0 / (2.0 * tau)) ** 2


def cpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    beta: float,
    nll_weight: float = 1.0,
) -> Tensor:
    """Contrastive Preference Optimization, Xu et al. 2024 (arXiv:2401.08417), eq. 6 (L_prefer + L_NLL):

        L = -log sigma( beta log pi(y_w) - beta log pi(y_l) ) - nll_weight * log pi(y_w)

    Reference-free: the NLL term on the chosen completion replaces the KL anchor.
    """
    prefer = -F.logsigmoid(beta * (policy_chosen_logps - policy_rejected_logps))
    return prefer - nll_weight * policy_chosen_logps


def kto_loss(
    policy_logps: Tensor,
    reference_logps: Tensor,
    desirable: Tensor,
    reference_point: Tensor | float,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> Tensor:
    """Kahneman-Tversky Optimization, Ethayarajh et al. 2024 (arXiv:2402.01306), eq. 8:

        r(x, y) = log pi(y|x) - log pi_ref(y|x),   z0 = KL(pi || pi_ref) (a detached reference point)
        v(x, y) = lambda_D sigma(beta (r - z0))   if y is desirable
                  lambda_U sigma(beta (z0 - r))   if y is undesirable
        L = lambda_y - v(x, y)

    Works on unpaired completions labelled desirable (True) or undesirable (False).
    """
    logratio = policy_logps - reference_logps
    z0 = torch.as_tensor(reference_point, dtype=logratio.dtype).detach()
    value = torch.where(
        desirable,
        desirable_weight * torch.sigmoid(beta * (logratio - z0)),
        undesirable_weight * torch.sigmoid(beta * (z0 - logratio)),
    )
    weight = torch.where(
        desirable, torch.full_like(logratio, desirable_weight), torch.full_like(logratio, undesirable_weight)
    )
    return weight - value


# --------------------------------------------------------------------------------------------------------
# Likelihood losses (SFT, Best-of-N, RAFT, ReST, RWR, SuperHF, negative gradients)
# --------------------------------------------------------------------------------------------------------


def nll_loss(policy_logps: Tensor, weights: Tensor | None = None) -> Tensor:
    """(Weighted) negative log-likelihood: L_i = -w_i log pi(y_i|x_i), w = 1 by default.

    With weights = 1 on a filtered set this is SFT / Best-of-N / RAFT (Dong et al. 2023, arXiv:2304.06767) /
    ReST (Gulcehre et al. 2023, arXiv:2308.08998); with w = exp(r / beta) it is reward-weighted regression.
    """
    if weights is None:
        return -policy_logps
    return -weights * policy_logps


def rwr_weights(rewards: Tensor, beta: float, max_weight: float | None = None, normalize: bool = False) -> Tensor:
    """Reward-weighted regression weights, Peters & Schaal 2007 (ICML), Dayan & Hinton 1997:

    w_i = exp(r_i / beta)                       (optionally clipped at max_weight), or
    w_i = N exp(r_i / beta) / sum_j exp(r_j / beta)   (self-normalised over the batch, mean 1)
    """
    if normalize:
        return torch.softmax(rewards / beta, dim=0) * rewards.numel()
    weights = torch.exp(rewards / beta)
    if max_weight is not None:
        weights = weights.clamp(max=max_weight)
    return weights


def negative_gradient_loss(policy_best_logps: Tensor, policy_negative_logps: Tensor, negative_weight: float) -> Tensor:
    """Best-of-N with a negative gradient, Tajwar et al. 2024 (arXiv:2404.14367), Sec. 5.2:

        L = -log pi(y_best) + alpha * log pi(y_neg)

    `policy_negative_logps` is log pi of the worst sample, or the mean log pi of the worse samples, per
    prompt. The second term pushes likelihood down: the "negative gradient" the paper isolates.
    """
    return -policy_best_logps + negative_weight * policy_negative_logps


# --------------------------------------------------------------------------------------------------------
# Policy-gradient losses (REINFORCE, RLOO, GRPO, PPO)
# --------------------------------------------------------------------------------------------------------


def policy_gradient_loss(policy_logps: Tensor, advantages: Tensor) -> Tensor:
    """REINFORCE, Williams 1992: L_i = -A_i log pi(y_i|x_i), with A_i = r_i - b (a baseline b).

    With a leave-one-out baseline b_i = mean_{j != i} r_j this is RLOO (Kool et al. 2019; Ahmadian et al.
    2024, arXiv:2402.14740). The advantage is a constant: only log pi carries gradient.
    """
    return -advantages.detach() * policy_logps


def clipped_surrogate_loss(policy_logps: Tensor, old_logps: Tensor, advantages: Tensor, clip_epsilon: float) -> Tensor:
    """PPO's clipped surrogate, Schulman et al. 2017 (arXiv:1707.06347), eq. 7, per token:

        rho_t = pi(y_t) / pi_old(y_t),   L_t = -min( rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t )

    Shapes broadcast: [N, L] token log-probs with [N, L] (PPO, GAE) or [N, 1] (GRPO) advantages.
    """
    ratio = torch.exp(policy_logps - old_logps.detach())
    advantages = advantages.detach()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_epsilon, 1.0 + clip_epsilon) * advantages
    return -torch.minimum(unclipped, clipped)


def value_loss(values: Tensor, returns: Tensor, old_values: Tensor | None = None, clip: float | None = None) -> Tensor:
    """Squared error of the value head, per token: 0.5 (V - R)^2, optionally clipped around the old values
    as in PPO's reference implementation: 0.5 max((V - R)^2, (clip(V, V_old +- c) - R)^2)."""
    returns = returns.detach()
    loss = (values - returns) ** 2
    if clip is not None and old_values is not None:
        clipped = old_values + (values - old_values).clamp(-clip, clip)
        loss = torch.maximum(loss, (clipped - returns) ** 2)
    return 0.5 * loss


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation, Schulman et al. 2015 (arXiv:1506.02438), eq. 16, per token:

        delta_t = r_t + gamma V_{t+1} - V_t,   A_t = sum_l (gamma lam)^l delta_{t+l},   R_t = A_t + V_t

    `rewards`, `values` and `mask` are [N, L]; positions past the end (mask 0) have V = 0 and A = 0.
    Returns (advantages, returns), both detached.
    """
    values = values.detach() * mask
    rewards = rewards * mask
    length = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
    return advantages, advantages + values


# --------------------------------------------------------------------------------------------------------
# KL to the reference: estimators on samples (Schulman 2020, "Approximating KL divergence")
# --------------------------------------------------------------------------------------------------------


def kl_estimate(policy_logps: Tensor, reference_logps: Tensor, estimator: str) -> Tensor:
    """Per-sample (or per-token) estimate of KL(pi || pi_ref) from y ~ pi, with log r = log pi_ref - log pi:

    k1 = -log r              (unbiased, high variance, can be negative)
    k2 = (log r)^2 / 2       (biased, low variance)
    k3 = (r - 1) - log r     (unbiased, non-negative; GRPO's choice, Shao et al. 2024 eq. 4)
    """
    log_r = reference_logps - policy_logps
    if estimator == "k1":
        return -log_r
    if estimator == "k2":
        return 0.5 * log_r**2
    if estimator == "k3":
        return torch.expm1(log_r) - log_r
    raise ValueError(f"unknown KL estimator {estimator!r}: use k1, k2 or k3")


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of x over positions where mask is 1 (all positions, or along `dim`)."""
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)
