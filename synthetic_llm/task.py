"""The synthetic LLM task: Tajwar et al.'s length problems and a verifiable arithmetic task on a tiny GPT-2.

Tajwar et al. 2024 (arXiv:2404.14367, Sec. 4.2) study preference fine-tuning on synthetic LLM problems whose
reward depends on the response length. Here the reference is a tiny causal LM trained in code on a corpus
with a known, skewed length law (synthetic_llm/reference.py), so the same questions as on the bandit can be
asked of a real token-level policy:

- `min_length`: r = 1 - L / max_new_tokens, L the response length in tokens (the end token excluded). The
  optimum (L = 0) is almost never produced by the reference, like bandit R1: on-policy sampling and a
  negative gradient should matter.
- `mean_length`: r = 1 - |L - L*| / max(L*, max_new_tokens - L*), L* the corpus mean length rounded (next to
  the reference's mode), like bandit R2: the offline data already covers the optimum.
- `arithmetic`: prompts `a+b=`, r = 1 if the response is exactly the sum (and ends), else 0. The reference
  learned from a corpus with `corpus_error_rate` wrong answers, so the reward can rise.

Every reward lies in [0, 1]. A completion that hits `max_new_tokens` without an end token has
L = max_new_tokens (min_length reward 0).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import Tensor

from alignlab.core.types import Rollout
from alignlab.errors import ConfigError, check_range
from alignlab.lm.policy import CausalLMPolicy, CausalLMValue, TokenCompletions
from alignlab.storage.rundir import atomic_write_bytes
from synthetic_llm import preference
from synthetic_llm.reference import (
    PROMPT_LETTERS,
    ReferenceSpec,
    arithmetic_prompt,
    length_law,
    letter_prompts,
    load_or_build_reference,
)
from synthetic_llm.tokenizer import CharTokenizer, check_tokenizer_matches

REWARDS = ("min_length", "mean_length", "arithmetic", "preference")  # preference: synthetic_llm/preference.py
RESPONSE_VOCABULARIES = ("corpus", "all")
HELD_OUT_MODULUS = 8  # a letter prompt whose letter indices sum to 0 mod 8 is kept for evaluation


def bradley_terry_scores(rewards: Tensor, beta: float, generator: torch.Generator) -> Tensor:
    """r + beta * Gumbel noise. Ranking by these scores prefers i over j with probability
    sigmoid((r_i - r_j) / beta) (Bradley-Terry), because the difference of two Gumbels is logistic."""
    uniform = torch.rand(rewards.shape, generator=generator, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
    return (rewards.double() - beta * torch.log(-torch.log(uniform))).to(rewards.dtype)


def completion_lengths(completions: TokenCompletions, eos_token_id: int) -> tuple[Tensor, Tensor]:
    """(L, ended): tokens before the end token ([N] float; max_new_tokens when it never ended) and whether
    the completion produced the end token ([N] bool). An end-token-only completion has L = 0."""
    ended = ((completions.tokens == eos_token_id) & (completions.mask > 0)).any(1)
    return completions.lengths - ended.float(), ended


class SyntheticLMTask:
    """A tiny GPT-2 reference with a known length distribution, and a length or arithmetic reward.

    The reference is trained on first use and cached in `cache_dir` (default: $ALIGNLAB_CACHE, else
    ~/.cache/alignlab); the policy starts as a copy of it, the PPO value model as a copy of its trunk with a
    zero-initialised scalar head.
    """

    def __init__(
        self,
        name: str = "synthetic_llm",
        reward: str = "min_length",
        reference_seed: int = 0,
        cache_dir: str | None = None,
        max_new_tokens: int = 24,
        temperature: float = 1.0,
        top_p: float = 1.0,
        n_layer: int = 2,
        n_embd: int = 64,
        n_head: int = 4,
        n_positions: int = 32,
        corpus_size: int = 4096,
        reference_steps: int | None = None,
        length_shape: float = 7.0,
        length_scale: float = 2.0,
        max_corpus_length: int = 20,
        target_length: int | None = None,
        max_operand: int = 9,
        corpus_error_rate: float = 0.3,
        label_noise_beta: float = 0.0,
        eval_prompts: int = 32,
        eval_samples_per_prompt: int = 4,
        logprob_batch_size: int | None = None,
        optimum_beta: float = 0.1,
        response_vocabulary: str = "corpus",
    ):
        if reward not in REWARDS:
            raise ConfigError(f"task.reward={reward} is not a synthetic_llm reward", f"use one of {', '.join(REWARDS)}")
        if label_noise_beta < 0:
            raise ConfigError(
                f"task.label_noise_beta={label_noise_beta} is negative", "use 0 (no noise) or a value > 0"
            )
        for key, value, interval in (
            ("eval_prompts", eval_prompts, "[1, inf)"),
            ("eval_samples_per_prompt", eval_samples_per_prompt, "[1, inf)"),
            ("corpus_size", corpus_size, "[1, inf)"),
            ("reference_steps", reference_steps, "[1, inf)"),
            ("n_layer", n_layer, "[1, inf)"),
            ("n_head", n_head, "[1, inf)"),
            ("n_embd", n_embd, "[1, inf)"),
            ("max_new_tokens", max_new_tokens, "[2, inf)"),
            ("temperature", temperature, "(0, inf)"),
            ("top_p", top_p, "(0, 1]"),
            ("max_operand", max_operand, "[0, inf)"),
            ("logprob_batch_size", logprob_batch_size, "[1, inf)"),
            ("target_length", target_length, "[0, inf)"),
        ):
            check_range(f"task.{key}", value, interval)
        if response_vocabulary not in RESPONSE_VOCABULARIES:
            raise ConfigError(
                f"task.response_vocabulary={response_vocabulary} is not a response vocabulary",
                f"use one of {', '.join(RESPONSE_VOCABULARIES)}",
            )
        if optimum_beta <= 0:
            raise ConfigError(f"task.optimum_beta={optimum_beta} must be positive", "set task.optimum_beta > 0")
        corpus = "arithmetic" if reward in ("arithmetic", "preference") else "length"
        if reference_steps is None:
            reference_steps = 600 if corpus == "arithmetic" else 300
        self.spec = ReferenceSpec(
            corpus=corpus,
            seed=reference_seed,
            n_layer=n_layer,
            n_embd=n_embd,
            n_head=n_head,
            n_positions=n_positions,
            corpus_size=corpus_size,
            steps=reference_steps,
            length_shape=length_shape,
            length_scale=length_scale,
            max_length=max_corpus_length,
            max_operand=max_operand,
            error_rate=corpus_error_rate,
        )
        self.spec.check()
        if max_corpus_length >= max_new_tokens:
            raise ConfigError(
                f"task.max_corpus_length={max_corpus_length} leaves no room for the end token within "
                f"task.max_new_tokens={max_new_tokens}",
                "set task.max_new_tokens above task.max_corpus_length",
            )
        self.name = name
        self.reward_name = reward
        self.reference_seed = reference_seed
        self.cache_dir = cache_dir
        self.max_new_tokens = max_new_tokens
        self.temperature, self.top_p = temperature, top_p
        self.logprob_batch_size = logprob_batch_size
        self.label_noise_beta = label_noise_beta
        self.eval_samples_per_prompt = eval_samples_per_prompt
        self.optimum_beta = optimum_beta
        self.tokenizer = CharTokenizer()
        self.response_vocabulary = response_vocabulary
        self.corpus_length_probs = length_law(self.spec)
        corpus_mean = float((self.corpus_length_probs * torch.arange(len(self.corpus_length_probs))).sum())
        self.target_length = int(round(corpus_mean)) if target_length is None else int(target_length)
        if not 0 <= self.target_length <= max_new_tokens:
            raise ConfigError(
                f"task.target_length={target_length} is outside 0..{max_new_tokens}", "pick a length in range"
            )
        eval_generator = torch.Generator().manual_seed(reference_seed + 7919)
        self.eval_prompt_list = self._prompts(eval_prompts, eval_generator, held_out=True)
        self._reference_model = None
        self.reference_path: Path | None = None
        self.reference_built = False
        self._named_rewards: dict = {}

    # ---- the reference and the policies ----------------------------------------------------------------
    @property
    def reference_model(self):
        """The trained reference LM (loaded from the cache, or built and cached on first use)."""
        if self._reference_model is None:
            model, self.reference_path, self.reference_built = load_or_build_reference(
                self.spec, self.tokenizer, self.cache_dir
            )
            check_tokenizer_matches(self.tokenizer, model)
            for p in model.parameters():
                p.requires_grad_(False)
            self._reference_model = model
            self._reference = self._wrap(model)
        return self._reference_model

    def _wrap(self, model) -> CausalLMPolicy:
        return CausalLMPolicy(
            model,
            self.tokenizer.pad_id,
            self.tokenizer.eos_id,
            self.max_new_tokens,
            self.temperature,
            self.top_p,
            logprob_batch_size=self.logprob_batch_size,
            response_token_ids=self.response_token_ids(),
        )

    def response_token_ids(self) -> Tensor | None:
        """The tokens a response may contain: with `response_vocabulary=corpus`, those of the corpus's
        responses (letters or digits, and the end token); with `all`, None (the whole vocabulary, including
        tokens the corpus never shows, on which the reference learned nothing)."""
        if self.response_vocabulary == "all":
            return None
        tok = self.tokenizer
        if self.spec.corpus == "arithmetic":
            body = torch.tensor([tok.ids[d] for d in "0123456789"])
        else:
            body = tok.letter_ids
        return torch.cat([body, torch.tensor([tok.eos_id])])

    def make_reference(self) -> CausalLMPolicy:
        self.reference_model  # noqa: B018 (builds or loads it)
        return self._reference

    def make_policy(self) -> CausalLMPolicy:
        model = copy.deepcopy(self.reference_model)
        for p in model.parameters():
            p.requires_grad_(True)
        model.train()  # dropout is off in this model; train mode only matters for real checkpoints
        return self._wrap(model)

    def make_value_model(self) -> CausalLMValue:
        model = copy.deepcopy(self.reference_model)
        for p in model.parameters():
            p.requires_grad_(True)
        return CausalLMValue(model, self.tokenizer.pad_id)

    # ---- prompts -----------------------------------------------------------------------------------------
    def _prompts(self, count: int, generator: torch.Generator, held_out: bool) -> list[Tensor]:
        if self.spec.corpus == "arithmetic":
            # 100 facts by default: too few to hold some out for a model this size, so evaluation draws
            # from the same facts with its own generator (a held-out sample, not held-out facts).
            ab = torch.randint(0, self.spec.max_operand + 1, (count, 2), generator=generator)
            return [arithmetic_prompt(int(a), int(b), self.tokenizer) for a, b in ab]
        rows = []
        while sum(len(r) for r in rows) < count:
            letters = torch.randint(0, 26, (2 * count * HELD_OUT_MODULUS, PROMPT_LETTERS), generator=generator)
            is_held_out = letters.sum(1) % HELD_OUT_MODULUS == 0
            rows.append(letters[is_held_out if held_out else ~is_held_out])
        return list(letter_prompts(torch.cat(rows)[:count], self.tokenizer))

    def sample_prompts(self, count: int, generator: torch.Generator) -> list[Tensor]:
        """Training prompts (never one of the held-out evaluation prompts, on the length tasks)."""
        return self._prompts(count, generator, held_out=False)

    # ---- reward ------------------------------------------------------------------------------------------
    def reward(self, prompts: list, completions: TokenCompletions) -> Tensor:
        if self.reward_name == "preference":
            return self.reward_function("preference")(prompts, completions)
        lengths, ended = completion_lengths(completions, self.tokenizer.eos_id)
        if self.reward_name == "min_length":
            return 1.0 - lengths / self.max_new_tokens
        if self.reward_name == "mean_length":
            scale = max(self.target_length, self.max_new_tokens - self.target_length)
            return (1.0 - (lengths - self.target_length).abs() / scale).clamp(0.0, 1.0)
        return self.correct(prompts, completions, ended).float()

    def reward_function(self, name: str):
        """A named reward of this task, for reward mixtures: the reward model for `preference` (trained once and
        kept), else a copy of the task's own reward rule set to `name`."""
        if name not in REWARDS:
            raise ConfigError(
                f"reward_mix names {name}, not a synthetic_llm reward", f"use one of {', '.join(REWARDS)}"
            )
        if name not in self._named_rewards:
            if name == "preference":
                self._named_rewards[name] = preference.load_or_train(self)
            else:
                other = copy.copy(self)
                other.reward_name = name
                self._named_rewards[name] = other.reward
        return self._named_rewards[name]

    def evaluate_rewards(self, policy, generator: torch.Generator, rewards: dict) -> dict[str, float]:
        """Each reward's mean on the held-out prompts (eval_prompts x eval_samples_per_prompt samples), and, when
        `preference` is one of them, the hidden rule it was trained on (`preference_hidden`)."""
        prompts, completions = self._sample_eval(policy, generator, self.eval_samples_per_prompt)
        result = {name: float(fn(prompts, completions).float().mean()) for name, fn in rewards.items()}
        if "preference" in rewards:
            result["preference_hidden"] = float(preference.hidden_preference(completions, self.tokenizer.eos_id).mean())
        return result

    def correct(self, prompts: list, completions: TokenCompletions, ended: Tensor) -> Tensor:
        """Arithmetic: the response is exactly the sum's digits, followed by the end token."""
        decode = self.tokenizer.decode
        right = []
        for prompt, tokens in zip(prompts, completions.tokens, strict=True):
            a, b = decode(prompt).rstrip("=").split("+")
            right.append(decode(tokens) == str(int(a) + int(b)))
        return torch.tensor(right, dtype=torch.bool) & ended

    def well_formed(self, prompts: list, completions: TokenCompletions) -> Tensor:
        """[N] bool: the response is made of what the corpus is made of, whatever its length. Length task: the
        alphabet continued from the prompt's last letter (up to the end token, or to max_new_tokens); arithmetic:
        digits, then the end token. The rewards read only the length (or the exact sum); this tells whether the
        policy still writes the corpus's language or has drifted to tokens its data never showed."""
        tokens = completions.tokens
        lengths, ended = completion_lengths(completions, self.tokenizer.eos_id)
        before_end = torch.arange(tokens.shape[1])[None, :] < lengths[:, None]
        if self.spec.corpus == "arithmetic":
            digits = (tokens >= self.tokenizer.ids["0"]) & (tokens <= self.tokenizer.ids["9"])
            return (digits | ~before_end).all(1) & ended & (lengths > 0)
        letter_of = {int(t): i for i, t in enumerate(self.tokenizer.letter_ids)}
        last = torch.tensor([letter_of.get(int(p[-2]), -1) for p in prompts])
        steps = torch.arange(1, tokens.shape[1] + 1)
        expected = self.tokenizer.letter_ids[(last[:, None] + steps[None, :]) % 26]
        return ((tokens == expected) | ~before_end).all(1) & (last >= 0)

    # ---- data --------------------------------------------------------------------------------------------
    def offline_data(self, num_prompts: int, samples_per_prompt: int, generator: torch.Generator) -> Rollout:
        """Reference samples for `num_prompts` training prompts, scored by the reward.

        With `label_noise_beta` > 0 the stored scores are r + beta * Gumbel noise (the true reward is kept in
        `extras["true_reward"]`). For any two samples the noisy order then prefers i over j with probability
        sigmoid((r_i - r_j) / beta), the Bradley-Terry model, because a difference of two Gumbels is logistic.
        """
        prompts = self.sample_prompts(num_prompts, generator)
        with torch.no_grad():
            completions = self.make_reference().sample(prompts, samples_per_prompt, generator)
        per_completion = [p for p in prompts for _ in range(samples_per_prompt)]
        rewards = self.reward(per_completion, completions)
        extras = {}
        if self.label_noise_beta > 0:
            extras["true_reward"] = rewards
            rewards = bradley_terry_scores(rewards, self.label_noise_beta, generator)
        return Rollout(per_completion, completions, rewards, samples_per_prompt, extras=extras)

    # ---- evaluation --------------------------------------------------------------------------------------
    def _sample_eval(
        self, policy, generator: torch.Generator, samples_per_prompt: int
    ) -> tuple[list, TokenCompletions]:
        with torch.no_grad():
            completions = policy.sample(self.eval_prompt_list, samples_per_prompt, generator)
        return [p for p in self.eval_prompt_list for _ in range(samples_per_prompt)], completions

    def evaluate(self, policy, generator: torch.Generator) -> dict[str, float]:
        """Estimates from eval_prompts x eval_samples_per_prompt samples on held-out prompts.

        kl_ref = mean over samples of sum_t (log pi(y_t|.) - log pi_ref(y_t|.)) (the k1 estimator, unbiased).
        """
        prompts, completions = self._sample_eval(policy, generator, self.eval_samples_per_prompt)
        with torch.no_grad():
            logp = policy.logprobs(prompts, completions).sum()
            ref_logp = self.make_reference().logprobs(prompts, completions).sum()
        rewards = self.reward(prompts, completions)
        lengths, ended = completion_lengths(completions, self.tokenizer.eos_id)
        q10, q50, q90 = torch.quantile(lengths, torch.tensor([0.1, 0.5, 0.9])).tolist()
        result = {
            "reward": float(rewards.mean()),
            "kl_ref": float((logp - ref_logp).mean()),
            "mean_length": float(lengths.mean()),
            "length_q10": q10,
            "length_median": q50,
            "length_q90": q90,
            "ended_fraction": float(ended.float().mean()),
            "well_formed": float(self.well_formed(prompts, completions).float().mean()),
            "logp": float(logp.mean()),
        }
        if self.reward_name == "arithmetic":
            result["accuracy"] = result["reward"]
        return result

    def distribution(self, policy) -> list[dict]:
        """One row per outcome: its reward, the empirical outcome frequencies of the reference and the policy (eval
        prompts x 16 samples each, a fixed seed), and pi*(o) ~ p_ref(o) exp(r(o) / optimum_beta), the maximiser
        of E[r] - optimum_beta KL(pi || pi_ref) (DPO's optimum too when its labels are Bradley-Terry in r).

        Length rewards: the outcome is the response length 0..max_new_tokens; the reward is a function of the
        length alone, so pi* over lengths is exact up to the sampling error of the reference's histogram.
        Arithmetic: the outcome is the answer's error, `-2`..`+2` (`0` is the right sum, reward 1) or `other` (any
        other answer, or no end token); pi* is computed per prompt from the reference's frequencies and averaged
        over the prompts. The preference reward (a learned model) is not a function of the outcome: its reward
        and pi* columns are empty.
        """
        if self.reward_name in ("arithmetic", "preference"):
            labels = ["-2", "-1", "0", "+1", "+2", "other"]
            rewards = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
            if self.reward_name == "preference":
                rewards = torch.full_like(rewards, float("nan"))
        else:
            labels = list(range(self.max_new_tokens + 1))
            buckets = torch.arange(self.max_new_tokens + 1, dtype=torch.float64)
            if self.reward_name == "min_length":
                rewards = 1.0 - buckets / self.max_new_tokens
            else:
                scale = max(self.target_length, self.max_new_tokens - self.target_length)
                rewards = (1.0 - (buckets - self.target_length).abs() / scale).clamp(0.0, 1.0)

        def frequencies(model) -> torch.Tensor:
            """[eval prompts, outcomes]: each prompt's outcome frequencies over 16 samples."""
            generator = torch.Generator().manual_seed(self.reference_seed + 104729)
            prompts, completions = self._sample_eval(model, generator, 16)
            outcome = self._outcomes(prompts, completions)
            counts = torch.zeros(len(self.eval_prompt_list), len(labels), dtype=torch.float64)
            counts.view(-1).index_add_(
                0,
                torch.arange(len(outcome)) // 16 * len(labels) + outcome,
                torch.ones(len(outcome), dtype=torch.float64),
            )
            return counts / 16

        if getattr(self, "_reference_outcomes", None) is None:  # the reference is frozen: sample it once
            self._reference_outcomes = frequencies(self.make_reference())
        reference, trained = self._reference_outcomes, frequencies(policy)
        tilt = torch.exp((rewards - rewards.max()) / self.optimum_beta)
        if self.reward_name == "preference":
            optimum = torch.full_like(rewards, float("nan"))
        elif self.reward_name == "arithmetic":
            weights = reference * tilt
            optimum = (weights / weights.sum(1, keepdim=True)).mean(0)
        else:  # the length law does not depend on the prompt: tilt the pooled histogram (less noise)
            weights = reference.mean(0) * tilt
            optimum = weights / weights.sum()
        reference, trained = reference.mean(0), trained.mean(0)
        return [
            {
                "completion": label,
                "reward": float(rewards[i]),
                "reference": float(reference[i]),
                "policy": float(trained[i]),
                "optimum": float(optimum[i]),
            }
            for i, label in enumerate(labels)
        ]

    def artifacts(self, policy, run_dir: Path) -> None:
        """distribution.csv: the final distribution(policy), for the run's figure."""
        lines = ["completion,reward,reference,policy,optimum"]
        for row in self.distribution(policy):
            lines.append(",".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row.values()))
        atomic_write_bytes(Path(run_dir) / "distribution.csv", ("\n".join(lines) + "\n").encode())

    def _outcomes(self, prompts: list, completions: TokenCompletions) -> Tensor:
        """[N] long: the bucket of each completion in distribution.csv (see `artifacts`)."""
        lengths, ended = completion_lengths(completions, self.tokenizer.eos_id)
        if self.reward_name not in ("arithmetic", "preference"):
            return lengths.long()
        outcome = []
        for prompt, tokens, done in zip(prompts, completions.tokens, ended.tolist(), strict=True):
            a, b = self.tokenizer.decode(prompt).rstrip("=").split("+")
            answer = self.tokenizer.decode(tokens)
            error = int(answer) - int(a) - int(b) if done and answer.isdigit() else None
            outcome.append(error + 2 if error is not None and abs(error) <= 2 else 5)
        return torch.tensor(outcome)
