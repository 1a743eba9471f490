"""Tier-3 rewards: length, a reward model (and training one), a verifiable math checker, an LLM judge, and
`make_reward`, which builds any of them by name from the task's settings.

Every reward scores text: `score(prompts, responses, lengths) -> [N]`, where `prompts` are PromptRecords
(chat turns and an optional gold answer), `responses` the decoded completions and `lengths` their token
counts. The task decodes the policy's tokens once and hands the text to whichever reward is configured.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from alignlab.errors import ConfigError, DataError, check_range
from alignlab.lm.policy import model_max_context
from full_scale.data import Messages, PairRecord, PromptRecord
from full_scale.models import from_source, load_causal_lm, load_tokenizer, resolve_model

REWARDS = ("length", "long_length", "reward_model", "judge", "math", "arithmetic")
VERIFIABLE = ("math", "arithmetic")
WIN_RATE = ("reward_model", "judge", "arithmetic")  # task.win_rate=null measures the win rate under these
LENGTH_TARGETS = ("short", "long")


def check_length_target(target: str) -> None:
    if target not in LENGTH_TARGETS:
        raise ConfigError(f"task.length_target={target} is not a target", f"use one of {', '.join(LENGTH_TARGETS)}")


class LengthReward:
    """r = 1 - len/max_new_tokens (`short`: the optimum, an immediate stop, is unlikely under an instruct
    model) or len/max_new_tokens (`long`), the tier-2 length rewards on a real model. `len` counts the
    completion's tokens, the end token included, so a completion cut at the cap has len = max_new_tokens.

    The reward `length` takes `task.length_target` (short by default: the `hard` role); the reward
    `long_length` is always `long`, and is the `easy` role of conf/task/full_scale.yaml because the reference's
    mode is the cap: 256 samples of SmolLM2-135M-Instruct (temperature 1, 8 per training prompt of the sample
    file, max_new_tokens=24, 2026-12-03) had 214 (84%) cut at 24 tokens and 42 ending earlier, spread over
    5-23 tokens with no other length above 5 samples; mean 22.6, reward 0.94 under `long_length`, 0.06 under
    `length` (python benchmarks/reference_lengths.py). Another model or cap has its own mode: measure it with that
    script before calling `long_length` easy there."""

    def __init__(self, target: str, max_new_tokens: int):
        check_length_target(target)
        self.target, self.max_new_tokens = target, max_new_tokens

    def score(self, prompts: list[PromptRecord], responses: list[str], lengths: Tensor) -> Tensor:
        fraction = lengths.float() / self.max_new_tokens
        return 1.0 - fraction if self.target == "short" else fraction


# ---- verifiable math -------------------------------------------------------------------------------------
class MathReward:
    """1 if the response's final answer equals the gold answer under `math-verify` (parse + verify), else 0."""

    def __init__(self):
        from math_verify import parse, verify

        self.parse, self.verify = parse, verify

    def check(self, answer: str, response: str) -> float:
        gold = self.parse(answer if "$" in answer or "\\" in answer else f"${answer}$")
        try:
            return float(bool(self.verify(gold, self.parse(response))))
        except Exception:  # math-verify raises on some malformed expressions: they are wrong answers
            return 0.0

    def score(self, prompts: list[PromptRecord], responses: list[str], lengths: Tensor) -> Tensor:
        scores = []
        for record, response in zip(prompts, responses, strict=False):
            if record.answer is None:
                raise DataError(
                    f"{record.source or 'a prompt'} has no gold answer for task.reward=math",
                    "add an 'answer' field to every prompt",
                )
            scores.append(self.check(record.answer, response))
        return torch.tensor(scores)


# ---- reward models ---------------------------------------------------------------------------------------
def conversation_text(tokenizer, messages: Messages, response: str) -> str:
    """The scored conversation in the reward model's own chat template (plain Human/Assistant otherwise)."""
    turns = messages + [{"role": "assistant", "content": response}]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(turns, tokenize=False)
    return "".join(f"\n\n{'Human' if m['role'] == 'user' else 'Assistant'}: {m['content']}" for m in turns)


def check_reward_head(model: nn.Module, where: str) -> None:
    labels = getattr(model.config, "num_labels", None)
    if labels != 1:
        raise ConfigError(
            f"the reward model {where} has num_labels={labels} "
            f"({list(getattr(model.config, 'id2label', {}).values())}), "
            "not one scalar score",
            "use a reward model with a single output (num_labels=1), e.g. one trained with "
            "python -m full_scale.train_reward_model",
        )


def sequence_scores(model: nn.Module, tokenizer, texts: list[str], max_length: int, device: torch.device) -> Tensor:
    """r(x, y) for each conversation text: the head's output at the last non-padding token, [N] (float32)."""
    batch = tokenizer(
        texts, padding=True, truncation=True, max_length=max_length, add_special_tokens=False, return_tensors="pt"
    )
    out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
    return out.logits[:, 0].float().cpu()


class RewardModel:
    """A sequence classifier with one output (AutoModelForSequenceClassification, num_labels=1)."""

    def __init__(
        self, model: nn.Module, tokenizer, batch_size: int = 16, max_length: int = 1024, name: str = "reward model"
    ):
        check_reward_head(model, name)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.max_length = batch_size, max_length

    @classmethod
    def load(cls, spec: str, device: torch.device, dtype: torch.dtype, **kwargs) -> RewardModel:
        from transformers import AutoModelForSequenceClassification

        source = resolve_model(spec, "task.reward_model")
        if source.kind == "tiny":
            raise ConfigError(
                "task.reward_model=tiny is an untrained head",
                "train one with python -m full_scale.train_reward_model and pass its directory",
            )
        fix = "point task.reward_model at a sequence-classification model directory"
        tokenizer = _plain_tokenizer(source, fix)
        model = from_source(AutoModelForSequenceClassification, source, "reward model", fix, dtype=dtype)
        return cls(model.to(device).eval().requires_grad_(False), tokenizer, name=spec, **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def score(self, prompts: list[PromptRecord], responses: list[str], lengths: Tensor | None = None) -> Tensor:
        texts = [conversation_text(self.tokenizer, p.messages, r) for p, r in zip(prompts, responses, strict=False)]
        parts = [
            sequence_scores(self.model, self.tokenizer, texts[i : i + self.batch_size], self.max_length, self.device)
            for i in range(0, len(texts), self.batch_size)
        ]
        return torch.cat(parts)


def _plain_tokenizer(source, fix: str):
    """A reward model's tokenizer, with or without a chat template (a plain transcript is used without)."""
    from transformers import AutoTokenizer

    tokenizer = from_source(AutoTokenizer, source, "reward model tokenizer", fix)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def bradley_terry_loss(chosen: Tensor, rejected: Tensor) -> Tensor:
    """-log sigmoid(r(x, y_w) - r(x, y_l)) (Bradley & Terry 1952; Ouyang et al. 2022, arXiv:2203.02155, eq. 1)."""
    return -nn.functional.logsigmoid(chosen - rejected)


def pair_scores(model: nn.Module, tokenizer, pairs: list[PairRecord], max_length: int = 1024) -> tuple[Tensor, Tensor]:
    device = next(model.parameters()).device
    chosen = [conversation_text(tokenizer, p.prompt.messages, p.chosen) for p in pairs]
    rejected = [conversation_text(tokenizer, p.prompt.messages, p.rejected) for p in pairs]
    scores = sequence_scores(model, tokenizer, chosen + rejected, max_length, device)
    return scores[: len(pairs)], scores[len(pairs) :]


@torch.no_grad()
def pairwise_accuracy(model: nn.Module, tokenizer, pairs: list[PairRecord], batch_size: int = 16) -> float:
    """Share of pairs where r(chosen) > r(rejected)."""
    wins = []
    for i in range(0, len(pairs), batch_size):
        chosen, rejected = pair_scores(model, tokenizer, pairs[i : i + batch_size])
        wins.append(chosen > rejected)
    return torch.cat(wins).float().mean().item()


def train_reward_model(
    model: nn.Module,
    tokenizer,
    pairs: list[PairRecord],
    epochs: int = 3,
    lr: float = 1e-4,
    batch_size: int = 8,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> list[float]:
    """Fit r(x, y) to preference pairs with the Bradley-Terry loss; returns the mean loss of each epoch."""
    check_reward_head(model, type(model).__name__)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    history = []
    for epoch in range(epochs):
        order = torch.randperm(len(pairs), generator=generator).tolist()
        losses = []
        for i in range(0, len(order), batch_size):
            chosen, rejected = pair_scores(model, tokenizer, [pairs[j] for j in order[i : i + batch_size]])
            loss = bradley_terry_loss(chosen, rejected).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append(loss.item())
        history.append(sum(losses) / len(losses))
        if log is not None:
            log(f"epoch {epoch + 1}/{epochs}: Bradley-Terry loss {history[-1]:.4f}")
    model.eval()
    return history


# ---- LLM judge -------------------------------------------------------------------------------------------
# The LLM-as-a-Judge prompt of Yuan et al. 2024, "Self-Rewarding Language Models" (arXiv:2401.10020, Fig. 2):
# five additive criteria, 0-5 points, ending with "Score: <total points>".
JUDGE_PROMPT = """Review the user's question and the corresponding response using the additive 5-point scoring system described below. Points are accumulated based on the satisfaction of each criterion:
- Add 1 point if the response is relevant and provides some information related to the user's inquiry, even if it is incomplete or contains some irrelevant content.
- Add another point if the response addresses a substantial portion of the user's question, but does not completely resolve the query or provide a direct answer.
- Award a third point if the response answers the basic elements of the user's question in a useful way, regardless of whether it seems to have been written by an AI Assistant or if it has elements typically found in blogs or search results.
- Grant a fourth point if the response is clearly written from an AI Assistant's perspective, addressing the user's question directly and comprehensively, and is well-organized and helpful, even if there is slight room for improvement in clarity, conciseness or focus.
- Bestow a fifth point for a response that is impeccably tailored to the user's question by an AI Assistant, without extraneous information, reflecting expert knowledge, and demonstrating a high-quality, engaging, and insightful answer.

User: {instruction}
<response>{response}</response>

After examining the user's instruction and the response:
- Briefly justify your total score, up to 100 words.
- Conclude with the score using the format: "Score: <total points>"

Remember to assess from the AI Assistant perspective, utilizing web search knowledge as necessary. To evaluate the response in alignment with this additive scoring model, we'll systematically attribute points based on the outlined criteria."""  # noqa: E501

_SCORE = re.compile(r"score\s*[:=]?\s*\**\s*(\d+(?:\.\d+)?)\s*(?:/\s*5|points?|out of 5)?", re.IGNORECASE)
_FALLBACK = re.compile(r"(\d+(?:\.\d+)?)\s*(?:/\s*5|out of 5|points)", re.IGNORECASE)


def sharded_across_processes(model: nn.Module) -> bool:
    """Whether every forward of `model` is a collective (FSDP2's fully_shard, DeepSpeed ZeRO-3's partitions:
    the self-judge under task.distributed=fsdp or deepspeed_zero3), so that every process must make as many as
    the others: generation then runs until every process's verdicts have ended (transformers' `synced_gpus`,
    which it turns on by itself only for models it sharded)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule) or any(hasattr(p, "ds_id") for p in model.parameters())


def parse_judge_score(text: str) -> float | None:
    """The judge's 0-5 score: the last "Score: X" (any case, markdown bold, "X/5" allowed), else the last
    "X/5" or "X points"; values outside 0-5 are ignored. None when there is none."""
    for pattern in (_SCORE, _FALLBACK):
        values = [float(m) for m in pattern.findall(text)]
        values = [v for v in values if 0.0 <= v <= 5.0 and math.isfinite(v)]
        if values:
            return values[-1]
    return None


JUDGE_SCORINGS = ("generate", "probabilities")
# probabilities: the judge's answer is forced to start with this, and the score is read from the next token.
SCORE_PREFIX = "Score: "
SCORE_VALUES = tuple(range(6))  # the additive prompt's 0-5 points


def score_token_ids(tokenizer) -> list[int]:
    """The token ids of the digits 0-5 as they follow SCORE_PREFIX, or a ConfigError when the tokenizer has no
    single token per digit there (then the next-token distribution cannot hold the score)."""
    prefix = tokenizer.encode(SCORE_PREFIX, add_special_tokens=False)
    ids = []
    for value in SCORE_VALUES:
        full = tokenizer.encode(f"{SCORE_PREFIX}{value}", add_special_tokens=False)
        split = len(full) != len(prefix) + 1 or full[: len(prefix)] != prefix
        if split or full[-1] in ids or full[-1] == tokenizer.unk_token_id:
            raise ConfigError(
                f"task.judge_scoring=probabilities needs one token per score digit after {SCORE_PREFIX!r}, but the "
                f"judge's tokenizer splits {SCORE_PREFIX + str(value)!r} as "
                f"{tokenizer.convert_ids_to_tokens(full)}",
                "use task.judge_scoring=generate with this judge",
            )
        ids.append(full[-1])
    return ids


class LLMJudge:
    """An LLM scores each response 0-5 with the additive prompt. With the policy itself as the judge this is
    self-rewarding.

    scoring="generate" (Yuan et al. 2024): a greedy verdict of up to `max_new_tokens` tokens, parsed by
    `parse_judge_score`; an unparseable verdict scores 0 and is counted in `parse_failures`.
    scoring="probabilities" (G-Eval, Liu et al. 2023, arXiv:2303.16634): the judge's answer starts with
    "Score: ", and the score is the expected value of 0-5 under the judge's next-token probabilities of the
    tokens "0".."5", renormalised over those six: one forward pass per request, no generation, never a
    parse failure."""

    def __init__(
        self,
        model_fn: Callable[[], nn.Module],
        tokenizer,
        max_new_tokens: int = 128,
        batch_size: int = 8,
        scoring: str = "generate",
    ):
        if scoring not in JUDGE_SCORINGS:
            raise ConfigError(
                f"task.judge_scoring={scoring} is not a judge scoring mode", f"use one of {', '.join(JUDGE_SCORINGS)}"
            )
        self.model_fn, self.tokenizer = model_fn, tokenizer
        self.max_new_tokens, self.batch_size, self.scoring = max_new_tokens, batch_size, scoring
        self.score_ids = score_token_ids(tokenizer) if scoring == "probabilities" else None
        self.parse_failures = 0
        self.calls = 0
        self.generated_tokens = 0
        self.read_tokens = 0

    def _batch(self, model: nn.Module, texts: list[str], new_tokens: int) -> dict[str, Tensor]:
        """Left-padded requests, checked against the judge's context (plus `new_tokens` to come)."""
        side, self.tokenizer.padding_side = self.tokenizer.padding_side, "left"
        try:
            batch = self.tokenizer(texts, padding=True, add_special_tokens=False, return_tensors="pt")
        finally:
            self.tokenizer.padding_side = side
        batch = batch.to(next(model.parameters()).device)
        context = model_max_context(model)
        needed = batch["input_ids"].shape[1] + new_tokens
        if context is not None and needed > context:
            extra = f", plus task.judge_max_new_tokens={self.max_new_tokens}" if new_tokens else ""
            raise DataError(
                f"a judge request needs {needed} tokens (the 0-5 prompt with the response{extra}), "
                f"over the judge model's context of {context}",
                "use a judge with a longer context (task.judge=PATH), or lower task.max_new_tokens or "
                "task.judge_max_new_tokens",
            )
        return batch

    @torch.no_grad()
    def generate(self, texts: list[str]) -> list[str]:
        model = self.model_fn()
        batch = self._batch(model, texts, self.max_new_tokens)
        was_training = model.training
        model.eval()
        try:
            out = model.generate(
                **batch,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                synced_gpus=sharded_across_processes(model),
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
            )
        finally:
            model.train(was_training)
        verdicts = out[:, batch["input_ids"].shape[1] :]
        self.generated_tokens += int((verdicts != self.tokenizer.pad_token_id).sum())
        return self.tokenizer.batch_decode(verdicts, skip_special_tokens=True)

    @torch.no_grad()
    def expected_scores(self, texts: list[str]) -> Tensor:
        """E[score] under the judge's next-token probabilities of "0".."5" after each text (which ends in
        SCORE_PREFIX), renormalised over the six; [N] float32. Left padding with position ids from the
        attention mask, so a request scores the same alone or in a batch."""
        model = self.model_fn()
        batch = self._batch(model, texts, 0)
        position_ids = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        was_training = model.training
        model.eval()
        try:
            logits = model(**batch, position_ids=position_ids, logits_to_keep=1).logits[:, -1]
        finally:
            model.train(was_training)
        self.read_tokens += int(batch["attention_mask"].sum())
        probs = torch.softmax(logits[:, self.score_ids].float(), dim=-1)
        return (probs * torch.tensor(SCORE_VALUES, dtype=probs.dtype, device=probs.device)).sum(-1).cpu()

    def requests(self, prompts: list[PromptRecord], responses: list[str]) -> list[str]:
        """The additive prompt for each response, chat-templated (and the answer's start, "Score: ", when the
        score is read from probabilities)."""
        start = SCORE_PREFIX if self.scoring == "probabilities" else ""
        return [
            self.tokenizer.apply_chat_template(
                [{"role": "user", "content": JUDGE_PROMPT.format(instruction=p.text, response=r)}],
                tokenize=False,
                add_generation_prompt=True,
            )
            + start
            for p, r in zip(prompts, responses, strict=False)
        ]

    def score(self, prompts: list[PromptRecord], responses: list[str], lengths: Tensor | None = None) -> Tensor:
        requests = self.requests(prompts, responses)
        scores: list[float] = []
        counted = "generated_tokens" if self.scoring == "generate" else "read_tokens"
        tokens_before = getattr(self, counted)
        with tqdm(total=len(requests), desc="judge", unit="verdict", delay=2.0, leave=False) as bar:
            for i in range(0, len(requests), self.batch_size):
                chunk = requests[i : i + self.batch_size]
                if self.scoring == "probabilities":
                    values = self.expected_scores(chunk).tolist()
                    self.calls += len(values)
                else:
                    values = []
                    for verdict in self.generate(chunk):
                        value = parse_judge_score(verdict)
                        self.calls += 1
                        if value is None:
                            self.parse_failures += 1
                        values.append(0.0 if value is None else value)
                scores.extend(values)
                bar.update(len(values))
                rate = (getattr(self, counted) - tokens_before) / max(bar.format_dict["elapsed"], 1e-6)
                bar.set_postfix_str(f"{rate:.0f} {'generated' if self.scoring == 'generate' else 'read'} tokens/s")
        return torch.tensor(scores)


# ---- the task's rewards, by name -------------------------------------------------------------------------------
def check_reward(reward: str, prompts: str | None, reward_model: str | None, judge_scoring: str) -> None:
    """task.reward and what it needs, checked before any model loads."""
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


@dataclass(frozen=True)
class RewardSettings:
    """What the task's rewards are built from: task.reward and the settings of each reward. Made before the
    policy loads, so that a reward model or judge path that does not exist fails in a second."""

    reward: str
    length_target: str
    max_new_tokens: int
    reward_model: str | None
    judge: str
    judge_max_new_tokens: int
    judge_scoring: str

    def __post_init__(self):
        check_range("task.judge_max_new_tokens", self.judge_max_new_tokens, "[1, inf)")
        check_length_target(self.length_target)  # whatever the reward: a typo fails before the model loads
        if self.reward == "reward_model":
            resolve_model(self.reward_model, "task.reward_model")
        if self.reward == "judge" and self.judge != "self":
            resolve_model(self.judge, "task.judge")


def make_reward(
    name: str,
    settings: RewardSettings,
    tokenizer,
    device: torch.device,
    dtype: torch.dtype,
    policy_model: Callable[[], nn.Module],
):
    """The reward called `name` (one of REWARDS; a reward model or a judge loads here). `policy_model` gives the
    policy's current model, which the judge `self` scores with (self-rewarding, Yuan et al. 2024)."""
    if name == "length":
        return LengthReward(settings.length_target, settings.max_new_tokens)
    if name == "long_length":
        return LengthReward("long", settings.max_new_tokens)
    if name in VERIFIABLE:
        return MathReward()
    if name == "reward_model":
        if not settings.reward_model:
            raise ConfigError("the reward reward_model needs a model", "set task.reward_model=/path/to/reward_model")
        return RewardModel.load(settings.reward_model, device, dtype)
    if settings.judge == "self":
        return LLMJudge(policy_model, tokenizer, settings.judge_max_new_tokens, scoring=settings.judge_scoring)
    source = resolve_model(settings.judge)
    judge_tokenizer = load_tokenizer(source)
    model = load_causal_lm(source, judge_tokenizer, dtype, device).requires_grad_(False)
    return LLMJudge(lambda: model, judge_tokenizer, settings.judge_max_new_tokens, scoring=settings.judge_scoring)
