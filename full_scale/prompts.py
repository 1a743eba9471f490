"""Tier 3's prompts: which ones a run trains and evaluates on, and how they become tokens.

- Which: the prompt file (`task.prompts`, read by full_scale/data.py; the sample file by default), only its
  prompts with a gold answer for `task.reward=math`, or the generated problems of full_scale/arithmetic.py for
  `task.reward=arithmetic`. Under a reward mixture by domain, the union of the domains' prompts.
- Held out: `task.eval_prompts` of each file or domain, evenly spaced through it.
- Tokens: a prompt through the tokenizer's chat template, remembered with its record (gold answer, source) so
  that a reward scores its text; the answers of preference pairs (`task.pairs`) as completions (offline data,
  when a pairs file is asked for; otherwise the offline data are reference samples, FullScaleTask.offline_data).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from alignlab.core.types import Rollout
from alignlab.errors import ConfigError, DataError
from alignlab.lm.policy import TokenCompletions
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

Groups = list[tuple[list[PromptRecord], str]]  # prompt records, and where they come from (for messages)
SAMPLE_PAIRS = "sample"  # task.pairs=sample: the shipped full_scale/data/pairs.jsonl


@dataclass
class PromptSource:
    """Where the task's prompts and preference pairs come from (`task.prompts`, `task.pairs`, or the arithmetic
    settings) and how many prompts of each file or domain are held out for evaluation (`task.eval_prompts`)."""

    prompts: str | None  # None: full_scale/data/prompts.jsonl
    pairs: str | None  # None: no pairs file (offline data are reference samples); `sample`: full_scale/data/pairs.jsonl
    num_problems: int
    max_operand: int
    operations: str
    eval_prompts: int
    pair_records: list[PairRecord] | None = field(default=None, init=False, repr=False)  # read once

    def read(self, reward: str) -> tuple[list[PromptRecord], list[PromptRecord]]:
        """(training, held-out) prompts for the task's own reward. A pairs file the user names is read now
        too: a bad row stops the run before the model loads."""
        train_and_held = self.for_reward(reward)
        if self.pairs is not None:
            self.read_pairs()
        return train_and_held

    def for_reward(self, reward: str) -> tuple[list[PromptRecord], list[PromptRecord]]:
        """(training, held-out) prompts for the task's own reward."""
        if reward == "arithmetic":
            records = self.problems()
        else:
            records = self.file_records()
        if reward == "math":
            records = [r for r in records if r.answer is not None]
            if len(records) < 2:
                raise DataError(
                    f"task.reward=math needs prompts with an 'answer' field; "
                    f"{self.prompts or 'the sample file'} has {len(records)}",
                    "add gold answers to the prompts",
                )
        return self.split([(records, self.prompts or "the sample prompts file")])

    def for_domains(self, domains: list[str], names: list[str]) -> tuple[list[PromptRecord], list[PromptRecord]]:
        """(training, held-out) prompts of a reward mixture by domain: `math`, the generated problems when a
        reward of the mixture is `arithmetic`, else the file's prompts with an answer; `chat`, the others."""
        return self.split([(self.domain_records(d, names), f"the {d} prompts") for d in domains])

    def domain_records(self, domain: str, names: list[str]) -> list[PromptRecord]:
        if domain == "math" and "arithmetic" in names:
            return self.problems()
        return [r for r in self.file_records() if (r.answer is not None) == (domain == "math")]

    def problems(self) -> list[PromptRecord]:
        return arithmetic_problems(self.num_problems, self.max_operand, self.operations)

    def file_records(self) -> list[PromptRecord]:
        return load_prompts(self.prompts or sample_file("prompts.jsonl"))

    @property
    def pairs_name(self) -> str:
        return "the sample pairs file" if self.pairs == SAMPLE_PAIRS else str(self.pairs)

    def read_pairs(self) -> list[PairRecord]:
        if self.pair_records is None:
            self.pair_records = load_pairs(sample_file("pairs.jsonl") if self.pairs == SAMPLE_PAIRS else self.pairs)
        return self.pair_records

    def pair_rollout(
        self, codec: ChatCodec, num_prompts: int, rank: int, world: int, generator: torch.Generator
    ) -> Rollout:
        """`num_prompts` preference pairs drawn from this process's share of the pairs, as a Rollout: chosen
        then rejected for each prompt, rewards [1, 0]."""
        pairs = self.read_pairs()
        usable = len(pairs) - len(pairs) % world
        if usable == 0:
            raise DataError(
                f"{len(pairs)} pairs cannot be shared by {world} processes", "add pairs or use fewer processes"
            )
        shard = pairs[:usable][rank::world]
        if num_prompts > len(shard):
            per_process = f" per process on {world}" if world > 1 else ""
            raise ConfigError(
                f"sampling.offline_prompts={num_prompts} asks for more pairs than "
                f"{self.pairs_name} has ({len(shard)}{per_process})",
                f"set sampling.offline_prompts={len(shard)} or fewer, or give more pairs",
            )
        chosen_idx = torch.randperm(len(shard), generator=generator)[:num_prompts].tolist()
        prompts, texts = [], []
        for i in chosen_idx:
            pair = shard[i]
            prompt = codec.encode(pair.prompt)
            prompts += [prompt, prompt]
            texts += [pair.chosen, pair.rejected]
        completions = codec.answers(texts, [shard[i].prompt.source for i in chosen_idx for _ in (0, 1)], prompts)
        rewards = torch.tensor([1.0, 0.0] * len(chosen_idx))
        return Rollout(prompts, completions, rewards, samples_per_prompt=2)

    def split(self, groups: Groups) -> tuple[list[PromptRecord], list[PromptRecord]]:
        """(training, held-out) prompts: `task.eval_prompts` of each group, evenly spaced through it, so that
        every kind of prompt is evaluated."""
        train, held = [], []
        for records, where in groups:
            held_out = held_out_rows(len(records), self.eval_prompts, where)
            duplicates = duplicated_held_out(records, held_out)
            if duplicates:
                print(
                    f"alignlab: warning: held-out prompts also among the training prompts: {', '.join(duplicates)}",
                    file=sys.stderr,
                )
            train += [r for i, r in enumerate(records) if i not in held_out]
            held += [r for i, r in enumerate(records) if i in held_out]
        return train, held


class ChatCodec:
    """Text to tokens and back through the tokenizer's chat template. Each prompt's record (gold answer,
    source) is kept under its token ids, so that a reward scores the text of whatever prompt it is given."""

    def __init__(self, tokenizer, max_new_tokens: int, max_context: int | None):
        self.tokenizer, self.max_new_tokens, self.max_context = tokenizer, max_new_tokens, max_context
        self.records: dict[tuple, PromptRecord] = {}

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

    def answers(self, texts: list[str], sources: list[str], prompts: list) -> TokenCompletions:
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
