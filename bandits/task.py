"""The bandit task: policy, reference, rewards R1/R2, offline data and an exact evaluator."""

from __future__ import annotations

from pathlib import Path

import torch

from alignlab.core.types import Rollout
from alignlab.errors import ConfigError, check_range
from alignlab.storage.rundir import atomic_write_bytes
from bandits.policy import SoftmaxPolicy, StateValue
from bandits.reference import cauchy_tanh_histogram, skewed_reference
from bandits.rewards import BumpReward

REFERENCES = ("skewed", "cauchy_tanh", "uniform")
REWARDS = ("r1", "r2")


class BanditTask:
    """A K-armed softmax bandit.

    R1 peaks on an arm the reference makes unlikely (`r1_peak`): reaching it needs exploration, so on-policy
    sampling matters. R2 peaks at the reference's mode (`r2_peak`): offline data already covers it.
    """

    def __init__(
        self,
        name: str = "bandit",
        num_arms: int = 8,
        reference: str = "skewed",
        skew: float = 0.6,
        reward: str = "r1",
        r1_peak: int = 7,
        r2_peak: int = 0,
        width: float = 1.5,
        behaviour: str = "reference",
        optimum_beta: float = 0.1,
    ):
        if reference not in REFERENCES:
            raise ConfigError(
                f"task.reference={reference} is not a bandit reference", f"use one of {', '.join(REFERENCES)}"
            )
        if reward not in REWARDS:
            raise ConfigError(f"task.reward={reward} is not a bandit reward", f"use one of {', '.join(REWARDS)}")
        if behaviour not in REFERENCES + ("reference",):
            raise ConfigError(
                f"task.behaviour={behaviour} is not a behaviour policy", "use reference, skewed, cauchy_tanh or uniform"
            )
        check_range("task.num_arms", num_arms, "[2, inf)", "a bandit needs two arms to choose between")
        check_range("task.width", width, "(0, inf)", "the width of the reward bump, in arms")
        check_range("task.skew", skew, "[0, inf)", "0 is uniform")
        for key, peak in (("r1_peak", r1_peak), ("r2_peak", r2_peak)):
            if not 0 <= peak < num_arms:
                raise ConfigError(
                    f"task.{key}={peak} is not an arm of a {num_arms}-armed bandit", f"use 0..{num_arms - 1}"
                )
        if optimum_beta <= 0:
            raise ConfigError(f"task.optimum_beta={optimum_beta} must be positive", "set task.optimum_beta > 0")
        self.name = name
        self.num_arms = num_arms
        self.ref_probs = self._distribution(reference, num_arms, skew)
        if not (self.ref_probs > 0).all():
            raise ConfigError(
                f"task.skew={skew} gives arms a reference probability of 0 (log-probs and KL are infinite)",
                "lower task.skew (exp(-skew * (num_arms - 1)) must stay above the smallest double)",
            )
        self.behaviour_probs = (
            self.ref_probs if behaviour == "reference" else self._distribution(behaviour, num_arms, skew)
        )
        self.reward_fn = BumpReward(num_arms, r1_peak if reward == "r1" else r2_peak, width)
        self.ref_logits = self.ref_probs.log().float()
        self.r1_peak, self.r2_peak, self.width = r1_peak, r2_peak, width
        self.optimum_beta = optimum_beta
        table = self.reward_fn.table.double()
        self.optimum = torch.softmax(self.ref_probs.log() + table / optimum_beta, dim=0)
        self.best_arm = int(table.argmax())

    @staticmethod
    def _distribution(kind: str, num_arms: int, skew: float) -> torch.Tensor:
        if kind == "skewed":
            return skewed_reference(num_arms, skew)
        if kind == "cauchy_tanh":
            return cauchy_tanh_histogram(num_arms)
        return torch.full((num_arms,), 1.0 / num_arms, dtype=torch.float64)

    # ---- the Task protocol -------------------------------------------------------------------------------
    def make_policy(self) -> SoftmaxPolicy:
        return SoftmaxPolicy(self.ref_logits)

    def make_reference(self) -> SoftmaxPolicy:
        return SoftmaxPolicy(self.ref_logits, trainable=False)

    def make_value_model(self) -> StateValue:
        return StateValue()

    def reward(self, prompts: list, completions: torch.Tensor) -> torch.Tensor:
        return self.reward_fn(prompts, completions)

    def reward_function(self, name: str) -> BumpReward:
        """A named reward of this bandit, for mixtures (alignlab/core/reward_mix.py)."""
        if name not in REWARDS:
            raise ConfigError(f"reward_mix names {name}, not a bandit reward", f"use one of {', '.join(REWARDS)}")
        return BumpReward(self.num_arms, self.r1_peak if name == "r1" else self.r2_peak, self.width)

    def evaluate_rewards(self, policy: SoftmaxPolicy, generator, rewards: dict) -> dict[str, float]:
        """The exact expected value of each reward under the policy."""
        with torch.no_grad():
            probs = policy.probs().double()
            arms = torch.arange(self.num_arms)
            return {name: float((probs * fn([0] * self.num_arms, arms).double()).sum()) for name, fn in rewards.items()}

    def sample_prompts(self, count: int, generator: torch.Generator) -> list:
        return [0] * count

    def offline_data(self, num_prompts: int, samples_per_prompt: int, generator: torch.Generator) -> Rollout:
        """`num_prompts` groups of samples from the behaviour policy (the reference by default), scored."""
        arms = torch.multinomial(
            self.behaviour_probs.float(), num_prompts * samples_per_prompt, replacement=True, generator=generator
        )
        prompts = [0] * len(arms)
        behaviour = SoftmaxPolicy(self.behaviour_probs.log().float(), trainable=False)
        with torch.no_grad():
            behaviour_logps = behaviour.logprobs(prompts, arms)
        return Rollout(prompts, arms, self.reward(prompts, arms), samples_per_prompt, old_logps=behaviour_logps)

    def evaluate(self, policy: SoftmaxPolicy, generator: torch.Generator | None = None) -> dict[str, float]:
        """Exact expectations under the policy's distribution."""
        with torch.no_grad():
            probs = policy.probs().double()
            logp = torch.log_softmax(policy.logits.double(), dim=0)
            table = self.reward_fn.table.double()
            kl_ref = (probs * (logp - self.ref_probs.log())).sum()
            return {
                "reward": float((probs * table).sum()),
                "kl_ref": float(kl_ref),
                "entropy": float(-(probs * logp).sum()),
                "p_optimal": float(probs[self.best_arm]),
                "tv_to_optimum": float(0.5 * (probs - self.optimum).abs().sum()),
            }

    def distribution(self, policy: SoftmaxPolicy) -> list[dict]:
        """The reference, the policy and pi* over arms, with each arm's reward: one row per arm."""
        with torch.no_grad():
            probs = policy.probs().double()
        return [
            {
                "completion": a,
                "reward": float(self.reward_fn.table[a]),
                "reference": float(self.ref_probs[a]),
                "policy": float(probs[a]),
                "optimum": float(self.optimum[a]),
            }
            for a in range(self.num_arms)
        ]

    def artifacts(self, policy: SoftmaxPolicy, run_dir: Path) -> None:
        """distribution.csv: the final distribution(policy), for the run's figure."""
        lines = ["completion,reward,reference,policy,optimum"]
        for row in self.distribution(policy):
            lines.append(",".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row.values()))
        atomic_write_bytes(Path(run_dir) / "distribution.csv", ("\n".join(lines) + "\n").encode())
