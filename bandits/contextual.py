"""Tier 1, the contextual bandit as Tajwar et al. 2024 built it (arXiv:2404.14367; their public bandit code,
github.com/Asap7772/understanding-rlhf, bandit_experiment/).

A prompt is a context: a random vector x ~ U[0, 1]^d (d = 100), one of `num_train_contexts` training contexts
or `num_eval_contexts` held-out ones. The policy is an MLP over x (their CategoricalActor: Linear(d, 50),
LayerNorm, ReLU, Linear(50, 256), ReLU, Linear(256, 256), ReLU, Linear(256, K); Xavier-uniform weights with
gain 0.01, zero biases) giving a softmax over K = 100 actions. Before alignment it is fine-tuned onto the
reference: the histogram of tanh(X), X ~ Cauchy(-0.7, 0.4), from 10,000 samples in K equal bins over [-1, 1],
by minimising the mean over training contexts of KL(pi(.|x) || histogram) with Adam (lr 0.01, 100 full-batch
epochs), as their `run_sft` does. That fine-tuned network is the reference and the policy's start. The rewards
do not depend on the context: bumps at action 70 (R1, where the reference is unlikely) and 20 (R2), width 10.

Unlike free logits, the network shares parameters across contexts, so the order of the data and
generalisation to held-out contexts can matter. Evaluation is exact per context (a softmax over K actions),
averaged over the held-out contexts (`reward`, `kl_ref`, ...) and over the training ones (`train_reward`).
"""

from __future__ import annotations

import copy
import functools
import math
from pathlib import Path

import torch
from torch import Tensor, nn

from alignlab.core.optim import Adam
from alignlab.core.types import LogProbs, Rollout
from alignlab.errors import ConfigError
from alignlab.storage.rundir import atomic_write_bytes
from bandits.rewards import BumpReward

REWARDS = ("r1", "r2")


def sampled_cauchy_tanh_histogram(num_bins: int, samples: int, generator: torch.Generator) -> Tensor:
    """Their ContinuousSampledCategorical: a histogram of `samples` draws of tanh(Cauchy(-0.7, 0.4)) in
    `num_bins` equal bins over [-1, 1] (numpy.histogram's bins: the last one includes 1)."""
    u = torch.rand(samples, generator=generator, dtype=torch.float64)
    x = torch.tanh(-0.7 + 0.4 * torch.tan(math.pi * (u - 0.5)))
    bins = ((x + 1.0) / 2.0 * num_bins).floor().clamp(0, num_bins - 1).long()
    return torch.bincount(bins, minlength=num_bins).double() / samples


class ContextMLP(nn.Module):
    """logits(x): their CategoricalActor's network."""

    def __init__(self, context_dim: int, num_actions: int, feature_dim: int, hidden_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(context_dim, feature_dim),
            nn.LayerNorm(feature_dim),
            nn.ReLU(),
            nn.Linear(feature_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, num_actions),
        )
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight, gain=1e-2)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ContextualPolicy(nn.Module):
    """pi(a | x) = softmax(MLP(x))[a]; a prompt is a context index into `contexts` (not saved with the weights:
    the task regenerates them from its seed)."""

    def __init__(self, net: ContextMLP, contexts: Tensor):
        super().__init__()
        self.net = net
        self.register_buffer("contexts", contexts, persistent=False)

    def log_probs(self, ids) -> Tensor:
        return torch.log_softmax(self.net(self.contexts[torch.as_tensor(ids, dtype=torch.long)]), dim=-1)

    def sample(self, prompts: list, samples_per_prompt: int, generator: torch.Generator) -> Tensor:
        probs = self.log_probs(prompts).detach().exp()
        return torch.multinomial(probs, samples_per_prompt, replacement=True, generator=generator).flatten()

    def logprobs(self, prompts: list, completions: Tensor) -> LogProbs:
        tokens = self.log_probs(prompts).gather(1, completions[:, None])
        return LogProbs(tokens, torch.ones_like(tokens))


class ContextValue(nn.Module):
    """PPO's value model V(x): a small MLP over the context, broadcast to the completion's one position."""

    def __init__(self, contexts: Tensor, width: int = 64):
        super().__init__()
        self.register_buffer("contexts", contexts, persistent=False)
        self.net = nn.Sequential(nn.Linear(contexts.shape[1], width), nn.ReLU(), nn.Linear(width, 1))

    def forward(self, prompts: list, completions: Tensor) -> Tensor:
        return self.net(self.contexts[torch.as_tensor(prompts, dtype=torch.long)])


def fit_reference(net: ContextMLP, contexts: Tensor, histogram: Tensor, epochs: int, lr: float) -> float:
    """Their run_sft: Adam on the mean over `contexts` of KL(pi(.|x) || histogram); returns the final KL. Empty
    bins get probability 1e-12, so the KL stays finite. alignlab's Adam is torch.optim.Adam's single-tensor
    step bit for bit, without the 0.8 s of CPU that importing torch._dynamo costs every run's process."""
    target = histogram.clamp_min(1e-12).log().float()
    optimizer = Adam(net.parameters(), lr=lr)
    kl = torch.tensor(0.0)
    for _ in range(epochs):
        logp = torch.log_softmax(net(contexts), dim=-1)
        kl = (logp.exp() * (logp - target)).sum(-1).mean()
        optimizer.zero_grad()
        kl.backward()
        optimizer.step()
    return float(kl.detach())


@functools.lru_cache(maxsize=4)
def fitted_reference(
    num_actions: int,
    context_dim: int,
    num_train_contexts: int,
    num_eval_contexts: int,
    feature_dim: int,
    hidden_dim: int,
    reference_samples: int,
    reference_epochs: int,
    reference_lr: float,
    context_seed: int,
) -> tuple[Tensor, Tensor, ContextMLP, float]:
    """(contexts, histogram, the fitted network, its final KL), from the seed alone: every run of a sweep's
    process (each seed, each job) builds the same reference, so it is fitted once per process (150 ms of CPU
    each time on the paper's sizes). The network is frozen; tasks take a copy."""
    generator = torch.Generator().manual_seed(context_seed)
    contexts = torch.rand(num_train_contexts + num_eval_contexts, context_dim, generator=generator)
    histogram = sampled_cauchy_tanh_histogram(num_actions, reference_samples, generator)
    torch_state = torch.get_rng_state()
    torch.manual_seed(context_seed)
    net = ContextMLP(context_dim, num_actions, feature_dim, hidden_dim)
    torch.set_rng_state(torch_state)
    fit = fit_reference(net, contexts[:num_train_contexts], histogram, reference_epochs, reference_lr)
    for p in net.parameters():
        p.requires_grad_(False)
    return contexts, histogram, net, fit


class ContextualBanditTask:
    """The contextual bandit: contexts 0..num_train_contexts-1 train, the next num_eval_contexts evaluate."""

    def __init__(
        self,
        name: str = "bandit_contextual",
        num_actions: int = 100,
        context_dim: int = 100,
        num_train_contexts: int = 100,
        num_eval_contexts: int = 100,
        feature_dim: int = 50,
        hidden_dim: int = 256,
        reference_samples: int = 10_000,
        reference_epochs: int = 100,
        reference_lr: float = 0.01,
        reward: str = "r1",
        r1_peak: int = 70,
        r2_peak: int = 20,
        width: float = 10.0,
        context_seed: int = 0,
        roles: dict | None = None,  # role -> reward name (read by the config layer, not here)
    ):
        if reward not in REWARDS:
            raise ConfigError(f"task.reward={reward} is not a bandit reward", f"use one of {', '.join(REWARDS)}")
        for key, value in (
            ("num_train_contexts", num_train_contexts),
            ("num_eval_contexts", num_eval_contexts),
            ("reference_samples", reference_samples),
            ("reference_epochs", reference_epochs),
            ("context_dim", context_dim),
        ):
            if value < 1:
                raise ConfigError(f"task.{key}={value} is below 1", f"set task.{key} to 1 or more")
        for key, peak in (("r1_peak", r1_peak), ("r2_peak", r2_peak)):
            if not 0 <= peak < num_actions:
                raise ConfigError(f"task.{key}={peak} is not one of {num_actions} actions", f"use 0..{num_actions - 1}")
        self.name = name
        self.num_actions = num_actions
        self.num_train_contexts = num_train_contexts
        self.num_eval_contexts = num_eval_contexts
        self.r1_peak, self.r2_peak, self.width = r1_peak, r2_peak, width
        self.reward_fn = self.reward_function(reward)
        self.contexts, self.histogram, net, self.reference_fit = fitted_reference(
            num_actions, context_dim, num_train_contexts, num_eval_contexts, feature_dim, hidden_dim,
            reference_samples, reference_epochs, reference_lr, context_seed,
        )  # fmt: skip
        self._reference = ContextualPolicy(copy.deepcopy(net), self.contexts)
        self._reference_logps: dict[str, Tensor] = {}  # the frozen reference's log-probs per context set

    def _ids(self, contexts: str) -> Tensor:
        if contexts == "train":
            return torch.arange(self.num_train_contexts)
        return torch.arange(self.num_train_contexts, self.num_train_contexts + self.num_eval_contexts)

    # ---- the Task protocol -------------------------------------------------------------------------------
    def make_policy(self) -> ContextualPolicy:
        policy = copy.deepcopy(self._reference)
        for p in policy.parameters():
            p.requires_grad_(True)
        return policy

    def make_reference(self) -> ContextualPolicy:
        return self._reference

    def make_value_model(self) -> ContextValue:
        return ContextValue(self.contexts)

    @property
    def num_arms(self) -> int:
        """The arms a completion may be (as on the free-logit bandit): a recording's are checked against it."""
        return self.num_actions

    def reward(self, prompts: list, completions: Tensor) -> Tensor:
        return self.reward_fn(prompts, completions)

    def reward_function(self, name: str) -> BumpReward:
        if name not in REWARDS:
            raise ConfigError(f"{name} is not a bandit reward", f"use one of {', '.join(REWARDS)}")
        return BumpReward(self.num_actions, self.r1_peak if name == "r1" else self.r2_peak, self.width)

    def sample_prompts(self, count: int, generator: torch.Generator) -> list:
        return torch.randint(0, self.num_train_contexts, (count,), generator=generator).tolist()

    def offline_data(self, num_prompts: int, samples_per_prompt: int, generator: torch.Generator) -> Rollout:
        """`num_prompts` training contexts x samples of the reference, scored, with the reference's log-probs."""
        prompts = self.sample_prompts(num_prompts, generator)
        with torch.no_grad():
            actions = self._reference.sample(prompts, samples_per_prompt, generator)
            per_completion = [p for p in prompts for _ in range(samples_per_prompt)]
            logps = self._reference.logprobs(per_completion, actions)
        return Rollout(
            per_completion, actions, self.reward(per_completion, actions), samples_per_prompt, old_logps=logps
        )

    def reference_logps(self, contexts: str) -> Tensor:
        """log pi_ref(.|x) over the `train` or `held_out` contexts, in float64: the reference is frozen, so each
        evaluation reads them instead of running it again."""
        if contexts not in self._reference_logps:
            with torch.no_grad():
                self._reference_logps[contexts] = self._reference.log_probs(self._ids(contexts)).double()
        return self._reference_logps[contexts]

    def _exact(self, policy: ContextualPolicy, contexts: str, table: Tensor) -> dict[str, float]:
        with torch.no_grad():
            logp = policy.log_probs(self._ids(contexts)).double()
            ref = self.reference_logps(contexts)
            probs = logp.exp()
            best = int(table.argmax())
            return {
                "reward": float((probs * table).sum(-1).mean()),
                "kl_ref": float((probs * (logp - ref)).sum(-1).mean()),
                "entropy": float(-(probs * logp).sum(-1).mean()),
                "p_optimal": float(probs[:, best].mean()),
            }

    def evaluate(self, policy: ContextualPolicy, generator: torch.Generator | None = None) -> dict[str, float]:
        """Exact expectations per context, averaged over the held-out contexts; `train_reward` over the
        training ones (the gap is generalisation across prompts)."""
        table = self.reward_fn.table.double()
        result = self._exact(policy, "held_out", table)
        result["train_reward"] = self._exact(policy, "train", table)["reward"]
        return result

    def evaluate_rewards(self, policy: ContextualPolicy, generator, rewards: dict) -> dict[str, float]:
        return {name: self._exact(policy, "held_out", fn.table.double())["reward"] for name, fn in rewards.items()}

    def artifacts(self, policy: ContextualPolicy, run_dir: Path) -> None:
        """distribution.csv over actions: the reward, and the reference's and policy's probabilities averaged
        over held-out contexts (no closed-form optimum column: pi* differs per context)."""
        with torch.no_grad():
            ref = self._reference.log_probs(self._ids("held_out")).exp().mean(0)
            pol = policy.log_probs(self._ids("held_out")).exp().mean(0)
        lines = ["completion,reward,reference,policy,optimum"]
        for a in range(self.num_actions):
            lines.append(f"{a},{float(self.reward_fn.table[a]):.6g},{float(ref[a]):.6g},{float(pol[a]):.6g},nan")
        atomic_write_bytes(Path(run_dir) / "distribution.csv", ("\n".join(lines) + "\n").encode())
