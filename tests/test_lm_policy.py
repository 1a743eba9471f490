"""The causal-LM policy's scoring forward computes logits only where a completion token is scored (issue 16).

The narrowed forward (`logits_to_keep`) and the full one compute the same rows of the same product (the trunk
is unchanged, each logit is one hidden row times the head), so log-probs are compared bit for bit (torch.equal),
and so are the trunk's gradients. The LM head's weight gradient is a sum over positions to which the full
forward adds zero rows (the prompt's): a BLAS may order that reduction differently by its size, so it is held
to 1e-6 of its largest entry, a few float32 roundings (on this CPU, torch 2.13, 1 and 2 threads, it is equal).
"""

from __future__ import annotations

import pytest
import torch

from alignlab.lm.policy import CausalLMPolicy
from full_scale.tiny import tiny_model, tiny_tokenizer
from synthetic_llm import CharTokenizer
from synthetic_llm.reference import ReferenceSpec, build_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tier3_tiny():
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer)
    prompts = [tokenizer(text, return_tensors="pt").input_ids[0] for text in ("Hello there, how are", "2+2=")]
    return model, tokenizer.pad_token_id, tokenizer.eos_token_id, prompts, None


def tier2_model():
    tokenizer = CharTokenizer()
    torch.manual_seed(0)
    model = build_model(ReferenceSpec(), tokenizer)
    prompts = [tokenizer.encode("abcd", bos=True), tokenizer.encode("xy", bos=True)]
    response_ids = torch.cat([tokenizer.letter_ids, torch.tensor([tokenizer.eos_id])])
    return model, tokenizer.pad_id, tokenizer.eos_id, prompts, response_ids


def lm_head_rows(model, run) -> list[int]:
    """Positions per row that reach the LM head while `run()` runs (from a hook on its input)."""
    seen = []
    handle = model.get_output_embeddings().register_forward_hook(lambda _m, args, _o: seen.append(args[0].shape[1]))
    try:
        run()
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("build", [tier3_tiny, tier2_model], ids=["tier3-tiny-llama", "tier2-gpt2"])
def test_scoring_narrows_the_lm_head_with_identical_logprobs_and_gradients(build):
    model, pad_id, eos_id, prompts, response_ids = build()
    model.train()
    policy = CausalLMPolicy(model, pad_id, eos_id, max_new_tokens=9, temperature=0.7, response_token_ids=response_ids)
    rows = [p for p in prompts for _ in range(3)]
    completions = policy.sample(prompts, 3, torch.Generator().manual_seed(0))
    assert completions.mask.sum(1).min() < completions.mask.shape[1]  # some rows are padded: the slice matters

    def scored(keeps_logits: bool):
        policy.keeps_logits = keeps_logits
        model.zero_grad()
        out = {}
        out["head_positions"] = lm_head_rows(model, lambda: out.setdefault("logps", policy.logprobs(rows, completions)))
        weights = torch.randn(completions.mask.shape, generator=torch.Generator().manual_seed(1))
        (out["logps"].tokens * weights).sum().backward()
        out["grads"] = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        return out

    narrowed, full = scored(True), scored(False)
    length = completions.tokens.shape[1]
    width = max(len(p) for p in rows)
    assert narrowed["head_positions"] == [length + 1] and full["head_positions"] == [width + length]
    assert torch.equal(narrowed["logps"].tokens, full["logps"].tokens)
    assert torch.equal(narrowed["logps"].mask, full["logps"].mask)
    assert narrowed["grads"].keys() == full["grads"].keys() and len(full["grads"]) > 0
    head = model.get_output_embeddings().weight
    for name, grad in full["grads"].items():
        param = model.get_parameter(name)
        if param is head:
            bound = 1e-6 * float(grad.abs().max())
            torch.testing.assert_close(narrowed["grads"][name], grad, rtol=0, atol=bound)
        else:
            assert torch.equal(narrowed["grads"][name], grad), name
