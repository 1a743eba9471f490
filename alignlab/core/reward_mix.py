"""Rewards combined: a weighted mixture of a task's named rewards, per sample or per prompt domain, and a
schedule of mixtures over iterations (Lanchantin et al. 2025, arXiv:2506.21495: non-verifiable then
verifiable rewards, the reverse, or both mixed).

    reward_mix:
      weights: {arithmetic: 0.5, preference: 0.5}      # every sample: sum_k w_k r_k / sum_k w_k
    reward_mix:
      domains: {math: {arithmetic: 1}, chat: {preference: 1}}   # a prompt's domain picks its weights
    reward_mix:
      schedule:                                        # phases in order; the last one lasts to the end
        - {iterations: 100, weights: {preference: 1}}
        - {iterations: 100, weights: {arithmetic: 1}}  # or {fraction: 0.5, ...}: a share of train.iterations

A component may be named by its role (`verifiable`, `hard`, ...) when the task config has `roles`. The task
supplies `reward_function(name)` (a reward callable) and `evaluate_rewards(policy, generator, rewards)` (each
reward's evaluation: exact on a bandit, estimated on held-out prompts on a language model); a task with
`prompt_domains(prompts)` can mix by domain. A task whose prompt set depends on the rewards it is scored with
has `prepare_mixture(names_by_domain)`, called once before training (tier 3: a verifiable and a chat reward
mixed by domain need generated problems and chat prompts). Each component is logged as `train/reward/<name>` and
`eval/reward/<name>` (by domain: the mean over the prompts it scores, NaN in a round with none of them);
`train/reward` and `eval/reward` are the mixture itself, with the round's weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignlab.core.types import select
from alignlab.errors import ConfigError

KEYS = ("weights", "domains", "schedule")
MIXTURE = "(mixture)"  # the key of the mixture itself among the rewards a task evaluates


def check_weights(weights: dict, where: str) -> dict[str, float]:
    if not isinstance(weights, dict) or not weights:
        raise ConfigError(f"{where} is not a mapping of reward name -> weight", f"write {where}: {{NAME: WEIGHT}}")
    out = {}
    for name, weight in weights.items():
        weight = float(weight)
        if weight < 0:
            raise ConfigError(f"{where}.{name}={weight} is negative", "use weights >= 0")
        out[str(name)] = weight
    if sum(out.values()) <= 0:
        raise ConfigError(f"the weights of {where} sum to zero", "give at least one reward a positive weight")
    return out


@dataclass
class MixtureSpec:
    """A checked reward_mix: phases of (first iteration, weights by domain; domain None = every prompt)."""

    phases: list[tuple[int, dict[str | None, dict[str, float]]]]

    @property
    def names(self) -> list[str]:
        seen: list[str] = []
        for _, by_domain in self.phases:
            for weights in by_domain.values():
                seen.extend(n for n in weights if n not in seen)
        return seen

    @property
    def names_by_domain(self) -> dict[str | None, list[str]]:
        """Every reward each domain is scored with in some phase (None: every prompt)."""
        out: dict[str | None, list[str]] = {}
        for _, by_domain in self.phases:
            for domain, weights in by_domain.items():
                out.setdefault(domain, []).extend(n for n in weights if n not in out[domain])
        return out

    @property
    def by_domain(self) -> bool:
        return any(None not in by_domain for _, by_domain in self.phases)

    def weights_at(self, iteration: int) -> dict[str | None, dict[str, float]]:
        current = self.phases[0][1]
        for start, by_domain in self.phases:
            if iteration >= start:
                current = by_domain
        return current

    @staticmethod
    def from_config(cfg: dict, iterations: int) -> MixtureSpec:
        given = [k for k in KEYS if cfg.get(k) is not None]
        unknown = sorted(set(cfg) - set(KEYS))
        if unknown or len(given) != 1:
            raise ConfigError(
                f"reward_mix has {', '.join(unknown or given) or 'none'} of weights, domains, schedule",
                "give exactly one of reward_mix.weights, reward_mix.domains or reward_mix.schedule",
            )
        if given == ["weights"]:
            return MixtureSpec([(0, {None: check_weights(cfg["weights"], "reward_mix.weights")})])
        if given == ["domains"]:
            domains = cfg["domains"]
            if not isinstance(domains, dict) or not domains:
                raise ConfigError("reward_mix.domains is empty", "map each prompt domain to {reward: weight}")
            return MixtureSpec([(0, {str(d): check_weights(w, f"reward_mix.domains.{d}") for d, w in domains.items()})])
        phases, start, share = [], 0, 0.0
        for i, phase in enumerate(cfg["schedule"]):
            weights = {None: check_weights(phase.get("weights"), f"reward_mix.schedule[{i}].weights")}
            if phase.get("fraction") is not None:  # a share of the run, so that a preset fits every budget
                fraction = float(phase["fraction"])
                if not 0 < fraction <= 1:
                    raise ConfigError(f"reward_mix.schedule[{i}].fraction={fraction} is not in (0, 1]", "use a share")
                share += fraction
                end = int(round(min(share, 1.0) * iterations))
                phases.append((start, weights))
                start = max(start, end)
                continue
            length = int(phase.get("iterations", 0))
            if length < 1:
                raise ConfigError(f"reward_mix.schedule[{i}].iterations={length} is below 1", "give each phase >= 1")
            phases.append((start, weights))
            start += length
        if not phases:
            raise ConfigError("reward_mix.schedule is empty", "give at least one phase")
        if share > 1 + 1e-9:
            raise ConfigError(
                f"reward_mix.schedule's fractions sum to {share:g}, longer than the run", "make them sum to 1 or less"
            )
        if start > iterations:
            raise ConfigError(
                f"reward_mix.schedule lasts {start} iterations, longer than the run (train.iterations={iterations})",
                f"shorten the phases to {iterations} iterations in all, or set train.iterations={start}",
            )
        return MixtureSpec(phases)


def mix(scores: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    total = sum(weights.values())
    return sum(w * scores[name] for name, w in weights.items()) / total


class MixedRewardTask:
    """A task whose reward is a mixture of its own named rewards; everything else is the wrapped task's."""

    def __init__(self, task, spec: MixtureSpec, roles: dict | None = None):
        for hook in ("reward_function", "evaluate_rewards"):
            if not hasattr(task, hook):
                raise ConfigError(f"task {task.name} cannot mix rewards (it has no {hook})", "unset reward_mix")
        if spec.by_domain and not hasattr(task, "prompt_domains"):
            raise ConfigError(
                f"task {task.name} gives its prompts no domain", "use reward_mix.weights instead of reward_mix.domains"
            )
        self._task = task
        self.spec = spec
        roles = roles or {}
        if hasattr(task, "prepare_mixture"):  # a task whose prompts depend on the rewards (tier 3: their domains)
            task.prepare_mixture({d: [roles.get(n, n) for n in names] for d, names in spec.names_by_domain.items()})
        self.components = {name: task.reward_function(roles.get(name, name)) for name in spec.names}
        self.weights = spec.weights_at(0)
        self.last_reward_components: dict[str, torch.Tensor] = {}

    def __getattr__(self, name):
        if name == "_task":  # not yet set (copy, unpickling)
            raise AttributeError(name)
        return getattr(self._task, name)

    def begin_round(self, iteration: int) -> None:
        self.weights = self.spec.weights_at(iteration)

    def reward(self, prompts: list, completions) -> torch.Tensor:
        """The mixture's scores. By domain, each prompt is scored only by the rewards its domain weighs (a
        verifiable reward may not even be defined on another domain's prompts); a component's logged scores are
        NaN on the prompts it does not score."""
        from alignlab.core.train import check_rewards

        count = len(prompts)
        if None in self.weights:
            names = sorted(self.weights[None])
            scores = {n: check_rewards(self.components[n](prompts, completions), count, f"reward {n}") for n in names}
            self.last_reward_components = {f"reward/{n}": s for n, s in scores.items()}
            return mix(scores, self.weights[None])
        domains = self._task.prompt_domains(prompts)
        names = sorted({n for w in self.weights.values() for n in w})
        components = {n: torch.full((count,), float("nan")) for n in names}
        out = torch.zeros(count)
        for domain in sorted(set(domains)):
            if domain not in self.weights:
                raise ConfigError(
                    f"a prompt of domain {domain} has no weights in reward_mix.domains",
                    f"add reward_mix.domains.{domain}",
                )
            rows = torch.tensor([i for i, d in enumerate(domains) if d == domain], dtype=torch.long)
            part_prompts, part = select(prompts, rows), select(completions, rows)
            scores = {
                n: check_rewards(self.components[n](part_prompts, part), len(rows), f"reward {n}")
                for n in self.weights[domain]
            }
            out[rows] = mix(scores, self.weights[domain])
            for n, s in scores.items():
                components[n][rows] = s.float()
        self.last_reward_components = {f"reward/{n}": s for n, s in components.items()}
        return out

    def evaluate(self, policy, generator: torch.Generator) -> dict[str, float]:
        result = dict(self._task.evaluate(policy, generator))
        rewards = dict(self.components)
        if None not in self.weights:  # by domain: the mixture itself, each prompt scored by its domain's rewards
            rewards[MIXTURE] = self.reward
        values = self._task.evaluate_rewards(policy, generator, rewards)
        mixture = values.pop(MIXTURE, None)
        result.update({f"reward/{name}": v for name, v in values.items()})
        weights = self.weights.get(None)
        if weights is not None:
            result["reward"] = sum(w * values[n] for n, w in weights.items()) / sum(weights.values())
        elif mixture is not None:
            result["reward"] = mixture
        return result


def with_reward_mixture(task, reward_mix: dict | None, iterations: int, roles: dict | None = None):
    """`task` itself, or with a `reward_mix` config the task wrapped to train on that mixture."""
    if reward_mix is None:
        return task
    if not isinstance(reward_mix, dict):
        from omegaconf import OmegaConf

        reward_mix = OmegaConf.to_container(reward_mix, resolve=True)
    return MixedRewardTask(task, MixtureSpec.from_config(reward_mix, iterations), roles)
