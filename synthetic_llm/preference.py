"""Tier 2's non-verifiable reward: a small Bradley-Terry reward model trained from preference pairs.

Real non-verifiable rewards are learned from human preferences that carry a style bias (longer answers,
Singhal et al. 2023, arXiv:2310.03716). Here the preferences come from a hidden rule on style: an answer to
`a+b=` is preferred the closer its length is to `PREFERRED_LENGTH` characters, whatever its correctness:

    h(y) = clip(1 - |L - PREFERRED_LENGTH| / PREFERRED_LENGTH, 0, 1),   L = characters before the end token.

alignlab makes the pairs itself: reference answers to training prompts, lengthened by 0..8 random characters
so that lengths vary, labelled by Bradley-Terry with temperature `LABEL_BETA` (P(y1 > y2) =
sigmoid((h1 - h2) / beta)). A GRU reward model fits the pairs by the Bradley-Terry loss
-log sigmoid(s(x, y_w) - s(x, y_l)) and learns the rule imperfectly (finite, noisy pairs; it sees the tokens,
not the length). The reward is sigmoid(s(x, y) - mean s over the reference's answers), in (0, 1), 0.5 for a
typical reference answer. Its optimum (a six-character answer) is not the verifiable one (the exact sum, one or
two digits), so `arithmetic` and `preference` pull apart: Lanchantin et al. 2025's (arXiv:2506.21495)
verifiable/non-verifiable curriculum can be asked on tier 2.
"""

from __future__ import annotations

import hashlib
import io
import json

import torch
from torch import Tensor, nn

from alignlab.storage.rundir import atomic_write_bytes

PREFERRED_LENGTH = 6
LABEL_BETA = 0.1
PAIRS = 4096
STEPS = 400
EXTRA_MAX = 8


def hidden_preference(completions, eos_id: int) -> Tensor:
    """h(y) in [0, 1] from the answer's length (the rule the reward model is trained to imitate)."""
    ended = ((completions.tokens == eos_id) & (completions.mask > 0)).any(1)
    lengths = completions.mask.sum(1) - ended.float()
    return (1.0 - (lengths - PREFERRED_LENGTH).abs() / PREFERRED_LENGTH).clamp(0.0, 1.0)


class PreferenceModel(nn.Module):
    """s(x, y): a GRU over the prompt and completion tokens, read out at the last real token."""

    def __init__(self, vocab_size: int, width: int = 32):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, 16)
        self.gru = nn.GRU(16, width, batch_first=True)
        self.head = nn.Linear(width, 1)

    def forward(self, prompts: list[Tensor], completions) -> Tensor:
        rows = [torch.cat([p, t[m > 0]]) for p, t, m in zip(prompts, completions.tokens, completions.mask, strict=True)]
        lengths = torch.tensor([len(r) for r in rows])
        ids = nn.utils.rnn.pad_sequence(rows, batch_first=True)
        hidden, _ = self.gru(self.embed(ids))
        last = hidden[torch.arange(len(rows)), lengths - 1]
        return self.head(last).squeeze(-1)


def lengthen(completions, eos_id: int, vocab_size: int, generator: torch.Generator):
    """Each answer with 0..EXTRA_MAX random non-special characters inserted before its end token."""
    tokens, out = [], []
    extra = torch.randint(0, EXTRA_MAX + 1, (len(completions),), generator=generator)
    for row, mask, k in zip(completions.tokens, completions.mask, extra.tolist(), strict=True):
        answer = row[mask > 0]
        ended = len(answer) > 0 and int(answer[-1]) == eos_id
        body = answer[:-1] if ended else answer
        noise = torch.randint(3, vocab_size, (k,), generator=generator)
        tokens.append(torch.cat([body, noise, torch.tensor([eos_id])]))
    width = max(len(t) for t in tokens)
    padded = torch.zeros(len(tokens), width, dtype=torch.long)
    mask = torch.zeros(len(tokens), width)
    for i, t in enumerate(tokens):
        padded[i, : len(t)], mask[i, : len(t)] = t, 1.0
    out = type(completions)(padded, mask)
    return out


class PreferenceReward:
    """The trained reward model as a reward callable, in (0, 1)."""

    def __init__(self, model: PreferenceModel, offset: float):
        self.model, self.offset = model, offset

    def __call__(self, prompts: list, completions) -> Tensor:
        with torch.no_grad():
            return torch.sigmoid(self.model(prompts, completions) - self.offset)


def train_preference_model(task, seed: int) -> tuple[PreferenceModel, float]:
    """Pairs from the task's reference, labelled by the hidden rule, fitted by the Bradley-Terry loss."""
    generator = torch.Generator().manual_seed(seed + 4099)
    torch_state = torch.get_rng_state()
    torch.manual_seed(seed + 4099)
    eos, vocab = task.tokenizer.eos_id, task.tokenizer.vocab_size
    prompts = task.sample_prompts(PAIRS, generator)
    with torch.no_grad():
        answers = task.make_reference().sample(prompts, 2, generator)
    per_completion = [p for p in prompts for _ in range(2)]
    candidates = lengthen(answers, eos, vocab, generator)
    h = hidden_preference(candidates, eos).view(PAIRS, 2)
    first_wins = torch.rand(PAIRS, generator=generator) < torch.sigmoid((h[:, 0] - h[:, 1]) / LABEL_BETA)
    winner = torch.where(first_wins, 0, 1) + torch.arange(PAIRS) * 2
    loser = torch.where(first_wins, 1, 0) + torch.arange(PAIRS) * 2
    model = PreferenceModel(vocab)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(STEPS):
        batch = torch.randint(0, PAIRS, (256,), generator=generator)
        idx = torch.cat([winner[batch], loser[batch]])
        scores = model([per_completion[i] for i in idx.tolist()], candidates[idx])
        loss = -nn.functional.logsigmoid(scores[:256] - scores[256:]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        offset = float(model(per_completion, answers).mean())
    torch.set_rng_state(torch_state)
    return model, offset


def load_or_train(task) -> PreferenceReward:
    """The reward model of this task's reference, cached beside it (trained once: about 10 s on 2 cores)."""
    key = json.dumps(
        {
            "reference": str(task.reference_path),
            "seed": task.reference_seed,
            "length": PREFERRED_LENGTH,
            "beta": LABEL_BETA,
            "pairs": PAIRS,
            "steps": STEPS,
            "extra": EXTRA_MAX,
            "version": 1,
        },
        sort_keys=True,
    )
    task.reference_model  # noqa: B018 (builds or loads the reference, which sets reference_path)
    path = task.reference_path.with_name(f"preference-rm-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt")
    model = PreferenceModel(task.tokenizer.vocab_size)
    if path.exists():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(saved["model"])
            model.eval()
            for p in model.parameters():
                p.requires_grad_(False)
            return PreferenceReward(model, float(saved["offset"]))
        except Exception:  # a damaged cache file is rebuilt
            pass
    model, offset = train_preference_model(task, task.reference_seed)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "offset": torch.tensor(offset)}, buffer)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError:
        pass
    return PreferenceReward(model, offset)
