"""A character vocabulary defined in code: special tokens, digits, '+', '=', '>' and the letters a-z."""

from __future__ import annotations

import string

import torch
from torch import Tensor, nn

from alignlab.errors import ConfigError, DataError

SPECIALS = ("<pad>", "<bos>", "<eos>")
SYMBOLS = tuple(string.digits) + ("+", "=", ">") + tuple(string.ascii_lowercase)


class CharTokenizer:
    """One token per character. Ids: 0 = pad, 1 = bos, 2 = eos, then digits, symbols and letters."""

    def __init__(self):
        self.vocab = SPECIALS + SYMBOLS
        self.ids = {c: i for i, c in enumerate(self.vocab)}
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2
        self.letter_ids = torch.tensor([self.ids[c] for c in string.ascii_lowercase])

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str, bos: bool = False) -> Tensor:
        unknown = sorted({c for c in text if c not in self.ids})
        if unknown:
            raise DataError(
                f"the text {text!r} has characters outside the vocabulary: {''.join(unknown)}",
                "use only digits, '+', '=', '>' and lowercase letters",
            )
        ids = [self.bos_id] if bos else []
        return torch.tensor(ids + [self.ids[c] for c in text], dtype=torch.long)

    def decode(self, ids) -> str:
        """Characters of the non-special ids, stopping at the first end token."""
        out = []
        for i in torch.as_tensor(ids).tolist():
            if i == self.eos_id:
                break
            if i >= len(SPECIALS):
                out.append(self.vocab[i])
        return "".join(out)


def check_tokenizer_matches(tokenizer: CharTokenizer, model: nn.Module) -> None:
    """Raise ConfigError unless the model's vocabulary has exactly the tokenizer's ids."""
    model_vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    if model_vocab != tokenizer.vocab_size:
        raise ConfigError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but the model's vocabulary has {model_vocab}",
            "build the model with vocab_size=tokenizer.vocab_size, or delete the cached reference built for "
            "another vocabulary (task.cache_dir)",
        )
