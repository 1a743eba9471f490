"""The causal-language-model policy shared by tiers 2 (synthetic_llm/) and 3 (full_scale/): sampling with a KV
cache, summed token log-probs of completions, and a value head."""
