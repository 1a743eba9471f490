"""A tiny, randomly initialised Llama-shaped model with a character-level chat tokenizer.

It is tier 3's test model (`task.model=tiny`): the same code path as SmolLM2 or Mistral-7B (a Hugging Face
causal LM, a fast tokenizer with a ChatML template), built in code in well under a second, so every
objective, the checkpoint round trip and the two-process DDP run can be tested on a CPU.
"""

from __future__ import annotations

import string

import torch
from tokenizers import Tokenizer, decoders
from tokenizers.models import BPE
from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification, PreTrainedTokenizerFast

SPECIAL = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
CHARS = sorted(set(string.printable) - set("\t\r\x0b\x0c"))
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def tiny_tokenizer(chat_template: str | None = CHATML) -> PreTrainedTokenizerFast:
    """One token per printable ASCII character, plus <pad>, <unk> and the ChatML markers (EOS = <|im_end|>)."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL + CHARS)}
    backend = Tokenizer(BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = chat_template
    tokenizer.model_max_length = 4096  # character-level: the judge prompt alone is ~1,800 tokens
    return tokenizer


def tiny_config(tokenizer: PreTrainedTokenizerFast, **overrides) -> LlamaConfig:
    shape = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    return LlamaConfig(**(shape | overrides))


def tiny_model(tokenizer: PreTrainedTokenizerFast, seed: int = 0, **overrides) -> LlamaForCausalLM:
    """A random 2-layer Llama, the same for the same seed (the global RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(tiny_config(tokenizer, **overrides)).eval()


def tiny_reward_model(tokenizer: PreTrainedTokenizerFast, seed: int = 0, **overrides) -> LlamaForSequenceClassification:
    """A random 2-layer Llama with a scalar head (num_labels=1): the shape of a reward model."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForSequenceClassification(tiny_config(tokenizer, **({"num_labels": 1} | overrides))).eval()
