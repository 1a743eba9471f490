"""Tier 2: a tiny causal LM with a known length distribution (Tajwar et al. 2024, arXiv:2404.14367, Sec. 4.2).

`CausalLMPolicy` / `CausalLMValue` / `TokenCompletions` wrap any Hugging Face causal LM and are reused by
tier 3 (full_scale/); `SyntheticLMTask` is the task (rewards min_length, mean_length, arithmetic).
"""

from alignlab.lm.policy import CausalLMPolicy, CausalLMValue, TokenCompletions
from synthetic_llm.task import SyntheticLMTask
from synthetic_llm.tokenizer import CharTokenizer, check_tokenizer_matches

__all__ = [
    "CausalLMPolicy",
    "CausalLMValue",
    "CharTokenizer",
    "SyntheticLMTask",
    "TokenCompletions",
    "check_tokenizer_matches",
]
