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


def check_weights(weights, where: str) -> dict[str, float]:
    if not isinstance(weights, dict) or not weights:
        raise ConfigError(f"{where} is not a mapping of reward name -> weight", f"write {where}: {{NAME: WEIGHT}}")
    out = {}
    for name, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise ConfigError(f"{where}.{name}={weight} is not a number", f"give {where}.{name} a weight >= 0")
        weight = float(weight)
        if weight < 0:
            raise ConfigError(f"{where}.{name}={weight} is negative", "use weights >= 0")
        out[str(name)] = weight
    if sum(out.values()) <= 0:
        raise ConfigError(f"the weights of {where} sum to zero", "give at least one reward a positive weight")
    return out


def _whole(value, where: str) -> int:
    """A phase's length in iterations: a whole number, never truncated."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ConfigError(f"{where}={value} is not a whole number of iterations", f"give {where} a whole number")
    if value < 1:
        raise ConfigError(f"{where}={value} is below 1", "give each phase >= 1")
    return int(value)


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
    def from_config(cfg, iterations: int) -> MixtureSpec:
        """A reward_mix as the user wrote it, checked as a whole (one line for whatever is malformed)."""
        example = (
            "write reward_mix={weights: {NAME: WEIGHT}} (or domains: or schedule:, see alignlab/core/reward_mix.py)"
        )
        if not isinstance(cfg, dict):
            raise ConfigError(f"reward_mix={cfg} is not a mapping", example)
        given = [k for k in KEYS if cfg.get(k) is not None]
        unknown = sorted(str(k) for k in set(cfg) - set(KEYS))
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
        return MixtureSpec._schedule(cfg["schedule"], iterations)

    @staticmethod
    def _schedule(schedule, iterations: int) -> MixtureSpec:
        """Phases of one kind: all `iterations` (whole numbers summing to train.iterations) or all `fraction`
        (shares of the run summing to 1, each boundary rounded to the nearest iteration)."""
        if not isinstance(schedule, list) or not schedule:
            raise ConfigError(
                "reward_mix.schedule is not a list of phases", "give a list of {iterations|fraction, weights}"
            )
        kinds = set()
        for i, phase in enumerate(schedule):
            where = f"reward_mix.schedule[{i}]"
            if not isinstance(phase, dict):
                raise ConfigError(
                    f"{where}={phase} is not a phase", f"write {where} as {{iterations: N, weights: ...}}"
                )
            kind = [k for k in ("iterations", "fraction") if phase.get(k) is not None]
            if len(kind) != 1:
                raise ConfigError(
                    f"{where} has {'both iterations and fraction' if kind else 'neither iterations nor fraction'}",
                    f"give {where} exactly one of iterations or fraction",
                )
            kinds.add(kind[0])
        if len(kinds) > 1:
            raise ConfigError(
                "reward_mix.schedule mixes iterations and fraction phases",
                "give every phase iterations, or every one fraction",
            )
        phases, start, share = [], 0, 0.0
        for i, phase in enumerate(schedule):
            weights = {None: check_weights(phase.get("weights"), f"reward_mix.schedule[{i}].weights")}
            phases.append((start, weights))
            if "fraction" in kinds:  # a share of the run, so that a preset fits every budget
                fraction = phase["fraction"]
                if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
                    raise ConfigError(f"reward_mix.schedule[{i}].fraction={fraction} is not in (0, 1]", "use a share")
                share += fraction
                start = max(start, int(round(min(share, 1.0) * iterations)))
            else:
                start += _whole(phase["iterations"], f"reward_mix.schedule[{i}].iterations")
        if "fraction" in kinds and abs(share - 1) > 1e-6:
            longer = "longer" if share > 1 else "shorter"
            raise ConfigError(
                f"reward_mix.schedule's fractions sum to {share:g}, {longer} than the run", "make them sum to 1"
            )
        if "iterations" in kinds and start != iterations:
            longer = "longer" if start > iterations else "shorter"
            raise ConfigError(
                f"reward_mix.schedule lasts {start} iterations, {longer} than the run (train.iterations={iterations})",
                f"make the phases {iterations} iterations in all, or set train.iterations={start}",
            )
        return MixtureSpec(phases)


def mix(scores: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    total = sum(weights.values())
    return sum(w * scores[name] for name, w in weights.items()) / total


class MixedRewardTask:
    """A task whose reward is a mixture of its own named rewards; everything else is the wrapped task's."""

    def __init__(self, task, spec: MixtureSpec, roles: dict | None = None, reward: str | None = None):
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
        if reward is not None and roles.get(reward, reward) not in {roles.get(n, n) for n in spec.names}:
            raise ConfigError(
                f"task.reward={reward} is not one of reward_mix's rewards ({', '.join(spec.names)}): the run would "
                f"train on the mixture, not on {reward}",
                f"set task.reward to one of {', '.join(spec.names)}, or drop reward_mix",
            )
        self.weights = spec.weights_at(0)
        self.last_reward_components: dict[str, torch.Tensor] = {}
        self._offline: list = []  # the offline data handed out, re-scored when a schedule changes the weights

    def __getattr__(self, name):
        if name == "_task":  # not yet set (copy, unpickling)
            raise AttributeError(name)
        return getattr(self._task, name)

    def begin_round(self, iteration: int) -> None:
        weights = self.spec.weights_at(iteration)
        if weights != self.weights:
            self.weights = weights
            for data in self._offline:
                self._score_offline(data)

    def offline_data(self, num_prompts: int, samples_per_prompt: int, generator: torch.Generator):
        """The task's offline data scored by the mixture (with this round's weights), not by the task's reward."""
        data = self._task.offline_data(num_prompts, samples_per_prompt, generator)
        self._score_offline(data)
        self._offline.append(data)
        return data

    def _score_offline(self, data) -> None:
        components = self.last_reward_components  # this round's own samples' components stay what is logged
        data.rewards = self.reward(data.prompts, data.completions).to(data.rewards.dtype)
        self.last_reward_components = components

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


def with_reward_mixture(task, reward_mix, iterations: int, roles: dict | None = None, reward: str | None = None):
    """`task` itself, or with a `reward_mix` config the task wrapped to train on that mixture. With `reward` (the
    config's task.reward, a name or a role), a mixture that does not name it is refused."""
    if reward_mix is None:
        return task
    from omegaconf import OmegaConf

    if OmegaConf.is_config(reward_mix):
        reward_mix = OmegaConf.to_container(reward_mix, resolve=True)
    return MixedRewardTask(task, MixtureSpec.from_config(reward_mix, iterations), roles, reward)
