"""The reference ("the SFT model"): a tiny GPT-2 trained in code on a synthetic corpus, cached on disk.

Two corpora, both generated from a seed:

- `length`: prompt `<bos>` + 4 random letters + `>`; the response continues the alphabet from the prompt's
  last letter ("abcd>" -> "efgh...") for L letters, then `<eos>`. L follows a known, right-skewed law:
  p(L) ~ L^(shape-1) exp(-L / scale) on 1..max_length (a discretised Gamma; mode (shape-1)*scale = 12 by
  default, mean 12.7 once truncated at 20, and short responses rare: p(L <= 4) is about 1%). Content is
  deterministic, so the only thing the model can vary is *where it stops*: its length distribution.
- `arithmetic`: prompt `<bos>a+b=`, response the digits of a + b then `<eos>`; with probability
  `error_rate` the corpus answer is off by 1 or 2, so the reference is right only part of the time and a
  verifiable reward has room to rise.

The trained weights are cached under `cache_dir` with a SHA-256 of the payload and the build settings; a
file that fails either check is rebuilt with a warning, never used.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from alignlab.errors import ConfigError
from alignlab.storage.rundir import atomic_write_bytes
from synthetic_llm.tokenizer import CharTokenizer, check_tokenizer_matches

CACHE_FORMAT = b"alignlab-synthetic-llm-reference-v1"
CORPORA = ("length", "arithmetic")
PROMPT_LETTERS = 4  # letters in a length-corpus prompt (fixed, so the position of a token tells its index)

# How many references this process trained (not loaded from the cache): lets tests see cache reuse.
build_count = 0


@dataclass(frozen=True)
class ReferenceSpec:
    """Everything that determines the reference's weights; its hash names the cache file."""

    corpus: str = "length"  # length | arithmetic
    seed: int = 0
    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    n_positions: int = 32
    corpus_size: int = 4096  # sequences in the training corpus
    steps: int = 300  # Adam steps of next-token training on the responses
    batch_size: int = 64
    lr: float = 3e-3
    length_shape: float = 7.0  # Gamma shape of the response-length law (length corpus)
    length_scale: float = 2.0  # Gamma scale
    max_length: int = 20  # longest corpus response, in letters
    max_operand: int = 9  # arithmetic operands are 0..max_operand
    error_rate: float = 0.3  # share of wrong answers in the arithmetic corpus

    def check(self) -> None:
        if self.corpus not in CORPORA:
            raise ConfigError(f"reference corpus {self.corpus!r} is unknown", f"use one of {', '.join(CORPORA)}")
        if not 0.0 <= self.error_rate < 1.0:
            raise ConfigError(f"task.corpus_error_rate={self.error_rate} is not in [0, 1)", "use e.g. 0.3")
        if self.max_length < 1 or self.length_shape <= 0 or self.length_scale <= 0:
            raise ConfigError("the length law needs max_length >= 1, shape > 0 and scale > 0", "fix task.length_*")
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"task.n_embd={self.n_embd} is not a multiple of task.n_head={self.n_head}",
                "choose n_embd divisible by n_head",
            )

    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(CACHE_FORMAT + text.encode()).hexdigest()[:16]


def length_law(spec: ReferenceSpec) -> Tensor:
    """p(L) for L = 0..max_length (p(0) = 0: the corpus has no empty responses)."""
    lengths = torch.arange(spec.max_length + 1, dtype=torch.float64)
    logp = (spec.length_shape - 1) * torch.log(lengths.clamp(min=1e-12)) - lengths / spec.length_scale
    logp[0] = -torch.inf
    return torch.softmax(logp, 0)


# ---- prompts and corpora -------------------------------------------------------------------------------
def letter_prompts(letters: Tensor, tokenizer: CharTokenizer) -> Tensor:
    """[N, PROMPT_LETTERS] letter indices -> [N, PROMPT_LETTERS + 2] prompt ids `<bos> letters >`."""
    n = letters.shape[0]
    bos = torch.full((n, 1), tokenizer.bos_id)
    arrow = torch.full((n, 1), tokenizer.ids[">"])
    return torch.cat([bos, tokenizer.letter_ids[letters], arrow], 1)


def arithmetic_prompt(a: int, b: int, tokenizer: CharTokenizer) -> Tensor:
    return tokenizer.encode(f"{a}+{b}=", bos=True)


def length_corpus(spec: ReferenceSpec, tokenizer: CharTokenizer, generator: torch.Generator) -> tuple[list, list]:
    n = spec.corpus_size
    letters = torch.randint(0, 26, (n, PROMPT_LETTERS), generator=generator)
    lengths = torch.multinomial(length_law(spec).float(), n, replacement=True, generator=generator)
    prompts = letter_prompts(letters, tokenizer)
    steps = torch.arange(1, spec.max_length + 1)
    content = tokenizer.letter_ids[(letters[:, -1:] + steps) % 26]  # the alphabet, continued
    responses = [torch.cat([content[i, : lengths[i]], torch.tensor([tokenizer.eos_id])]) for i in range(n)]
    return list(prompts), responses


def arithmetic_corpus(spec: ReferenceSpec, tokenizer: CharTokenizer, generator: torch.Generator) -> tuple[list, list]:
    n = spec.corpus_size
    a = torch.randint(0, spec.max_operand + 1, (n,), generator=generator)
    b = torch.randint(0, spec.max_operand + 1, (n,), generator=generator)
    wrong = torch.rand(n, generator=generator) < spec.error_rate
    offset = torch.tensor([-2, -1, 1, 2])[torch.randint(0, 4, (n,), generator=generator)]
    answer = a + b + torch.where(wrong, offset, torch.zeros_like(offset))
    answer = torch.where(answer < 0, a + b + offset.abs(), answer)
    prompts = [arithmetic_prompt(int(x), int(y), tokenizer) for x, y in zip(a, b, strict=True)]
    responses = [torch.cat([tokenizer.encode(str(int(s))), torch.tensor([tokenizer.eos_id])]) for s in answer]
    return prompts, responses


# ---- the model -----------------------------------------------------------------------------------------
def build_model(spec: ReferenceSpec, tokenizer: CharTokenizer):
    """A GPT-2 shaped `transformers` model from a config in code (no download), dropout off."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=tokenizer.vocab_size,
        n_positions=spec.n_positions,
        n_embd=spec.n_embd,
        n_layer=spec.n_layer,
        n_head=spec.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_id,
        eos_token_id=tokenizer.eos_id,
        pad_token_id=tokenizer.pad_id,
    )
    return GPT2LMHeadModel(config)


def train_reference(spec: ReferenceSpec, tokenizer: CharTokenizer):
    """Next-token training on the corpus responses (prompt tokens are context only), from `spec.seed`."""
    global build_count
    spec.check()
    torch.manual_seed(spec.seed)
    generator = torch.Generator().manual_seed(spec.seed)
    make = length_corpus if spec.corpus == "length" else arithmetic_corpus
    prompts, responses = make(spec, tokenizer, generator)
    width = max(len(p) + len(r) for p, r in zip(prompts, responses, strict=True))
    if width > spec.n_positions:
        raise ConfigError(
            f"corpus sequences of {width} tokens exceed the model's {spec.n_positions} positions",
            "raise task.n_positions or lower task.max_corpus_length",
        )
    # Right-padded sequences; targets are the response tokens only (-100 elsewhere).
    ids = torch.full((len(prompts), width), tokenizer.pad_id)
    labels = torch.full((len(prompts), width), -100)
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        seq = torch.cat([p, r])
        ids[i, : len(seq)] = seq
        labels[i, len(p) : len(seq)] = r
    model = build_model(spec, tokenizer)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 - s / spec.steps)
    for _ in range(spec.steps):
        batch = torch.randint(0, len(prompts), (spec.batch_size,), generator=generator)
        # Right padding after a causal model's real tokens changes nothing before it: no attention mask needed.
        logits = model(input_ids=ids[batch], attention_mask=torch.ones_like(ids[batch])).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[batch, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    build_count += 1
    return model


# ---- the cache -----------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    return Path(os.environ.get("ALIGNLAB_CACHE") or Path.home() / ".cache" / "alignlab")


def cache_path(spec: ReferenceSpec, cache_dir: str | Path | None) -> Path:
    directory = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    return directory / f"synthetic_llm-{spec.corpus}-{spec.key()}.pt"


def encode_cache(spec: ReferenceSpec, model) -> bytes:
    buffer = io.BytesIO()
    torch.save({"spec": asdict(spec), "state_dict": model.state_dict()}, buffer)
    payload = buffer.getvalue()
    return CACHE_FORMAT + b"\n" + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def decode_cache(data: bytes, spec: ReferenceSpec, tokenizer: CharTokenizer):
    """The cached model, or raise ValueError naming what is wrong with the file."""
    header, _, rest = data.partition(b"\n")
    digest, _, payload = rest.partition(b"\n")
    if header != CACHE_FORMAT:
        raise ValueError("unknown header")
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        raise ValueError("checksum mismatch")
    state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    if state.get("spec") != asdict(spec):
        raise ValueError("it was built with other settings")
    model = build_model(spec, tokenizer)
    model.load_state_dict(state["state_dict"])
    model.eval()
    return model


def load_or_build_reference(spec: ReferenceSpec, tokenizer: CharTokenizer, cache_dir: str | Path | None = None):
    """(model, path, built): the cached reference if its file is intact, else a freshly trained one."""
    spec.check()
    path = cache_path(spec, cache_dir)
    if path.exists():
        try:
            model = decode_cache(path.read_bytes(), spec, tokenizer)
            check_tokenizer_matches(tokenizer, model)
            return model, path, False
        except Exception as error:  # any damage: say so, rebuild, overwrite
            warnings.warn(
                f"the cached synthetic_llm reference {path} is damaged ({error}); rebuilding it "
                f"(delete the file, or point task.cache_dir elsewhere, to avoid this)",
                stacklevel=2,
            )
    model = train_reference(spec, tokenizer)
    try:
        atomic_write_bytes(path, encode_cache(spec, model))
    except OSError as error:
        warnings.warn(
            f"could not write the reference cache {path} ({error}); the reference will be retrained next run "
            "(set task.cache_dir or ALIGNLAB_CACHE to a writable directory)",
            stacklevel=2,
        )
    return model, path, True
