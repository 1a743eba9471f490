"""A causal language model as an alignlab policy: KV-cached sampling and per-token log-probs.

`CausalLMPolicy` wraps any Hugging Face causal LM (`PreTrainedModel`): the tiny GPT-2 of tier 2 and the real
checkpoints of tier 3 alike. It knows nothing about a task: a prompt is a 1-D LongTensor of token ids
(chat template and BOS already applied), a completion is a row of `TokenCompletions`.

Conventions (shared with the core's per-token objectives, e.g. PPO's GAE):

- A completion's mask is 1 on every generated token *including* the end token when one was produced, 0 on
  padding. So an end-token-only completion (an empty answer) still has one scored token: the decision to
  stop. A completion that hits `max_new_tokens` without an end token has `max_new_tokens` scored tokens.
- log pi(y_t | x, y_<t) is computed from logits / temperature, the distribution `sample` draws from (before
  top-p truncation: with top_p < 1 the log-probs are those of the untruncated tempered distribution, the
  usual choice of RLHF libraries).
- Prompts are left-padded and position ids count only real tokens, so a row's numbers do not depend on the
  other rows of its batch.
- The model may sit on any device (a GPU in tier 3); prompts, completions, log-probs and values live on the
  CPU, where the core keeps rewards, and move to the model's device only for its forward passes (the move is
  differentiable).
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from alignlab.core.types import LogProbs
from alignlab.errors import ConfigError, DataError


@dataclass
class TokenCompletions:
    """N completions as token ids, right-padded to length L, with a mask of the generated tokens."""

    tokens: Tensor  # [N, L] long, padded with the pad id
    mask: Tensor  # [N, L] float: 1.0 on generated tokens (end token included), 0.0 on padding

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def __getitem__(self, idx: Tensor) -> TokenCompletions:
        return TokenCompletions(self.tokens[idx], self.mask[idx])

    @property
    def lengths(self) -> Tensor:
        """Scored tokens per completion (end token included), [N] float."""
        return self.mask.sum(1)

    @staticmethod
    def cat(parts: list[TokenCompletions], pad_token_id: int = 0) -> TokenCompletions:
        """Concatenate, right-padding every part to the longest (padding carries mask 0, so its id is moot)."""
        length = max(p.tokens.shape[1] for p in parts)
        tokens = [nn.functional.pad(p.tokens, (0, length - p.tokens.shape[1]), value=pad_token_id) for p in parts]
        masks = [nn.functional.pad(p.mask, (0, length - p.mask.shape[1])) for p in parts]
        return TokenCompletions(torch.cat(tokens), torch.cat(masks))


def model_max_context(model: nn.Module) -> int | None:
    """The longest sequence the model's position embeddings cover, if its config says."""
    config = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def left_pad(prompts: list[Tensor], pad_token_id: int) -> tuple[Tensor, Tensor]:
    """Stack 1-D prompts into [N, P] ids and attention mask, padded on the left."""
    if len(prompts) == 0:
        raise DataError("no prompts were given", "pass at least one prompt")
    rows = []
    for i, p in enumerate(prompts):
        p = torch.as_tensor(p, dtype=torch.long)
        if p.dim() != 1 or p.numel() == 0:
            raise DataError(
                f"prompt {i} has shape {tuple(p.shape)}, not a non-empty 1-D tensor of token ids",
                "pass each prompt as a 1-D LongTensor with at least one token (e.g. the BOS token)",
            )
        rows.append(p)
    length = max(p.numel() for p in rows)
    ids = torch.full((len(rows), length), pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(rows), length), dtype=torch.long)
    for i, p in enumerate(rows):
        ids[i, length - p.numel() :] = p
        attention[i, length - p.numel() :] = 1
    return ids, attention


def positions(attention: Tensor) -> Tensor:
    """Position ids that count only attended tokens (0 on left padding)."""
    return (attention.cumsum(1) - 1).clamp(min=0)


def check_pairing(prompts: list, completions: TokenCompletions) -> None:
    if len(prompts) != len(completions):
        raise DataError(
            f"{len(prompts)} prompts were given for {len(completions)} completions",
            "pass one prompt per completion (repeat each prompt samples_per_prompt times)",
        )


def pack(prompts: list[Tensor], completions: TokenCompletions, pad_token_id: int) -> tuple[Tensor, Tensor, Tensor, int]:
    """[left-padded prompt | right-padded completion] ids, attention mask, position ids, and the prompt width P.

    Position P - 1 + t holds the state before completion token t (its logits predict token t).
    """
    check_pairing(prompts, completions)
    prompt_ids, prompt_attention = left_pad(prompts, pad_token_id)
    mask = completions.mask
    tokens = torch.where(mask > 0, completions.tokens, torch.full_like(completions.tokens, pad_token_id))
    ids = torch.cat([prompt_ids, tokens], dim=1)
    attention = torch.cat([prompt_attention, (mask > 0).long()], dim=1)
    return ids, attention, positions(attention), prompt_ids.shape[1]


def cache_keyword(model: nn.Module) -> str:
    """The name the model's forward gives its KV cache: `cache` in transformers >= 5.2x, else `past_key_values`.
    A peft wrapper's forward takes **kwargs, so the wrapped model's signature is the one that tells."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def output_cache(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def compute_precision(model: nn.Module, autocast_dtype: torch.dtype | None):
    """The context a forward pass runs in: bf16/fp16 compute on fp32 weights under `torch.autocast` (mixed
    precision: the optimizer keeps fp32 master weights and states), or the weights' own dtype (None)."""
    if autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(model_device(model).type, dtype=autocast_dtype)


def check_context(prompt_width: int, new_tokens: int, max_context: int | None) -> None:
    if max_context is not None and prompt_width + new_tokens > max_context:
        raise DataError(
            f"a prompt of {prompt_width} tokens plus {new_tokens} completion tokens exceeds the model's context "
            f"of {max_context} positions",
            "shorten the prompts, lower max_new_tokens, or use a model with a longer context",
        )


def generation_bar(label: str | None, rows: int, max_new_tokens: int):
    """A progress bar over decoding steps (ETA to max_new_tokens) that shows generated tokens/s; it appears
    only when a generation lasts over 2 s, so tier 2's millisecond generations stay silent."""
    if label is None:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=max_new_tokens, desc=f"{label}: {rows} completions", unit="step", delay=2.0, leave=False)


class CausalLMPolicy(nn.Module):
    """pi(y | x) of a causal LM, with its own KV-cached decoding loop (reproducible from a torch.Generator).

    `model` is any Hugging Face causal LM. `max_context` defaults to the model's position limit;
    `logprob_batch_size` bounds how many sequences one forward pass of `logprobs` holds (None: all).
    `response_token_ids` (None: the whole vocabulary) are the only tokens a completion may contain: every other
    logit is -inf when sampling and when scoring, so pi is a distribution over completions made of them.
    """

    def __init__(
        self,
        model: nn.Module,
        pad_token_id: int,
        eos_token_id: int,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_context: int | None = None,
        logprob_batch_size: int | None = None,
        response_token_ids: Tensor | None = None,
        progress: str | None = None,
        autocast_dtype: torch.dtype | None = None,
    ):
        super().__init__()
        if max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens={max_new_tokens} is below 1", "set max_new_tokens to 1 or more")
        if temperature <= 0:
            raise ConfigError(f"temperature={temperature} must be positive", "use a temperature > 0, e.g. 1.0")
        if not 0 < top_p <= 1:
            raise ConfigError(f"top_p={top_p} is not in (0, 1]", "use top_p=1.0 (no truncation) or a value in (0, 1)")
        if logprob_batch_size is not None and logprob_batch_size < 1:
            raise ConfigError(f"logprob_batch_size={logprob_batch_size} is below 1", "use None or a positive size")
        self.model = model
        self.pad_token_id = pad_token_id
        self.eos_token_id = eos_token_id
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.max_context = max_context if max_context is not None else model_max_context(model)
        self.logprob_batch_size = logprob_batch_size
        self.blocked = None
        if response_token_ids is not None:
            vocab = model.get_output_embeddings().weight.shape[0]
            ids = torch.as_tensor(response_token_ids, dtype=torch.long)
            if ids.numel() == 0 or ids.min() < 0 or ids.max() >= vocab or eos_token_id not in ids.tolist():
                raise ConfigError(
                    f"response_token_ids must be ids in 0..{vocab - 1} that include the end token {eos_token_id}",
                    "pass None (the whole vocabulary) or a list of valid ids with the end token",
                )
            self.blocked = torch.ones(vocab, dtype=torch.bool)
            self.blocked[ids] = False
        # Sharded (FSDP) models gather their weights in every forward, so all processes must decode the same
        # number of steps: stop_together(this process is done) -> whether every process is done.
        self.stop_together = None
        self.autocast_dtype = autocast_dtype  # mixed precision: compute dtype over fp32 weights (None: off)
        self.progress = progress  # a label: show a progress bar (ETA, tokens/s) for generations over 2 s
        # Logits are needed only where a token is drawn or scored: the prompt's forward pass in `sample` needs
        # its last position, and `logprobs` the positions before each completion token. A model that cannot
        # narrow them (an old transformers, a wrapper without the argument) computes all, and the same slice
        # of them is read.
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.keeps_logits = "logits_to_keep" in inspect.signature(base.forward).parameters

    def _last_logits(self, count: int) -> dict:
        """The forward's keyword that narrows its logits to the last `count` positions (none if it cannot)."""
        return {"logits_to_keep": count} if self.keeps_logits else {}

    def _restrict(self, logits: Tensor) -> Tensor:
        if self.blocked is None:
            return logits
        return logits.masked_fill(self.blocked.to(logits.device), -torch.inf)

    # ---- sampling --------------------------------------------------------------------------------------
    def _draw(self, logits: Tensor, generator: torch.Generator) -> Tensor:
        probs = torch.softmax(logits.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            # Keep the smallest set of most likely tokens whose mass reaches top_p (the first is always kept).
            drop = sorted_probs.cumsum(-1) - sorted_probs >= self.top_p
            sorted_probs = sorted_probs.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    @torch.no_grad()
    def sample(self, prompts: list[Tensor], samples_per_prompt: int, generator: torch.Generator) -> TokenCompletions:
        """len(prompts) * samples_per_prompt completions, prompt-major, each ending at the end token or at
        `max_new_tokens`."""
        rows = [p for p in prompts for _ in range(samples_per_prompt)]
        ids, attention = left_pad(rows, self.pad_token_id)
        check_context(ids.shape[1], self.max_new_tokens, self.max_context)
        device = model_device(self.model)
        ids, attention = ids.to(device), attention.to(device)
        position = positions(attention)
        bar, generated = generation_bar(self.progress, len(rows), self.max_new_tokens), 0
        with compute_precision(self.model, self.autocast_dtype):
            out = self.model(
                input_ids=ids, attention_mask=attention, position_ids=position, use_cache=True, **self._last_logits(1)
            )
        past, logits = output_cache(out), self._restrict(out.logits[:, -1])
        cache_key = cache_keyword(self.model)
        next_position = position[:, -1] + 1
        done = torch.zeros(len(rows), dtype=torch.bool, device=device)
        tokens, masks = [], []
        for step in range(self.max_new_tokens):
            token = self._draw(logits, generator)
            token = token.masked_fill(done, self.pad_token_id)
            tokens.append(token)
            masks.append((~done).float())
            done = done | (token == self.eos_token_id)
            if bar is not None:
                generated += int(masks[-1].sum())
                bar.update(1)
                bar.set_postfix_str(f"{generated / max(bar.format_dict['elapsed'], 1e-6):.0f} tokens/s")
            finished = bool(done.all())
            if self.stop_together is not None:
                finished = self.stop_together(finished)
            if finished or step + 1 == self.max_new_tokens:
                break
            attention = torch.cat([attention, torch.ones_like(attention[:, :1])], dim=1)
            with compute_precision(self.model, self.autocast_dtype):
                out = self.model(
                    input_ids=token[:, None],
                    attention_mask=attention,
                    position_ids=next_position[:, None],
                    use_cache=True,
                    **{cache_key: past},
                )
            past, logits = output_cache(out), self._restrict(out.logits[:, -1])
            next_position = next_position + 1
        if bar is not None:
            bar.close()
        return TokenCompletions(torch.stack(tokens, 1).cpu(), torch.stack(masks, 1).cpu())

    # ---- scoring ---------------------------------------------------------------------------------------
    def _logprobs(self, prompts: list[Tensor], completions: TokenCompletions) -> Tensor:
        ids, attention, position, width = pack(prompts, completions, self.pad_token_id)
        length = completions.tokens.shape[1]
        check_context(width, length, self.max_context)
        device = model_device(self.model)
        ids = ids.to(device)
        # The last length + 1 positions run from the one before the first completion token to the last token;
        # the final one predicts past the completion. Narrowing the LM head to them skips the prompt's
        # [N, P, vocab] product and its backward (issue 16: about 12% of the forward and backward on SmolLM2).
        with compute_precision(self.model, self.autocast_dtype):
            logits = self.model(
                input_ids=ids,
                attention_mask=attention.to(device),
                position_ids=position.to(device),
                **self._last_logits(length + 1),
            ).logits
        logits = self._restrict(logits[:, -(length + 1) : -1].float()) / self.temperature
        targets = ids[:, width:]
        logps = torch.log_softmax(logits, dim=-1).gather(-1, targets[:, :, None]).squeeze(-1)
        if self.blocked is None:
            return logps.cpu() * completions.mask
        scored = completions.mask > 0
        if self.blocked[completions.tokens][scored].any():
            raise DataError(
                "a completion contains tokens outside the policy's response_token_ids (log-prob -inf)",
                "score only completions made of the response tokens, or build the policy without the restriction",
            )
        return torch.where(scored, logps.cpu(), 0.0)

    def logprobs(
        self, prompts: list[Tensor], completions: TokenCompletions, logprob_batch_size: int | None = None
    ) -> LogProbs:
        """Per-token log pi(y_t | x, y_<t), [N, L], zero on padding; differentiable."""
        check_pairing(prompts, completions)
        size = logprob_batch_size or self.logprob_batch_size or len(completions)
        parts = []
        for start in range(0, len(completions), size):
            idx = torch.arange(start, min(start + size, len(completions)))
            parts.append(self._logprobs(prompts[start : start + size], completions[idx]))
        tokens = parts[0] if len(parts) == 1 else torch.cat(parts)
        return LogProbs(tokens, completions.mask)


class CausalLMValue(nn.Module):
    """V(x, y_<t): a transformer trunk with a linear scalar head, one value per completion token.

    `model` is a Hugging Face causal LM or base model; only its trunk (`model.base_model`) is kept. The value
    at completion position t is read at the state before token t is emitted, as PPO's GAE expects.
    """

    def __init__(
        self,
        model: nn.Module,
        pad_token_id: int,
        max_context: int | None = None,
        autocast_dtype: torch.dtype | None = None,
    ):
        super().__init__()
        self.autocast_dtype = autocast_dtype
        self.trunk = getattr(model, "base_model", model)
        self.pad_token_id = pad_token_id
        self.max_context = max_context if max_context is not None else model_max_context(model)
        self.head = nn.Linear(model.config.hidden_size, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, prompts: list[Tensor], completions: TokenCompletions) -> Tensor:
        ids, attention, position, width = pack(prompts, completions, self.pad_token_id)
        length = completions.tokens.shape[1]
        check_context(width, length, self.max_context)
        device = model_device(self.trunk)
        with compute_precision(self.trunk, self.autocast_dtype):
            hidden = self.trunk(
                input_ids=ids.to(device), attention_mask=attention.to(device), position_ids=position.to(device)
            ).last_hidden_state
        weight = self.head.weight
        hidden = hidden[:, width - 1 : width - 1 + length].to(device=weight.device, dtype=weight.dtype)
        return self.head(hidden).squeeze(-1).float().cpu() * completions.mask
