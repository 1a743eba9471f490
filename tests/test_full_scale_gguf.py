"""The GGUF path of tier 3 (the embedded SmolLM2 is a GGUF file): a reward model trained from a GGUF base
saves as plain safetensors that load back with the same scores, and `task.reward=reward_model` runs on it.

The fixture is a tiny random Llama written by the `gguf` package in the layout llama.cpp uses (byte-level
BPE tokenizer, ChatML template, float32 tensors), so the test needs no download and runs in seconds."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from full_scale import FullScaleTask
from full_scale.data import load_pairs
from full_scale.models import load_causal_lm, load_tokenizer, resolve_model
from full_scale.rewards import RewardModel, pairwise_accuracy
from full_scale.train_reward_model import main as train_reward_model_main

gguf = pytest.importorskip("gguf")
np = pytest.importorskip("numpy")

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def byte_level_alphabet() -> list[str]:
    """GPT-2's byte-to-unicode map: one printable character per byte, the base vocabulary of a byte-level BPE."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = [256 + i for i in range(256 - len(kept))]
    others = iter(shifted)
    return [chr(b) if b in kept else chr(next(others)) for b in sorted(range(256), key=lambda b: b not in kept)]


def write_tiny_gguf(path: Path, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """A 2-layer Llama of width 32 as a GGUF file (architecture, tokenizer and chat template inside)."""
    rng = np.random.default_rng(seed)
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *byte_level_alphabet(), "Ġt"]
    types = [gguf.TokenType.CONTROL] * 3 + [gguf.TokenType.NORMAL] * (len(tokens) - 3)
    heads, kv_heads, ffn = 4, 2, 2 * hidden
    kv_width = kv_heads * hidden // heads
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(layers)
    writer.add_context_length(4096)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(["Ġ t"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML)

    def weight(name: str, *shape: int) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.05).astype(np.float32))

    weight("token_embd.weight", len(tokens), hidden)
    for i in range(layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(hidden, np.float32))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(hidden, np.float32))
        weight(f"blk.{i}.attn_q.weight", hidden, hidden)
        weight(f"blk.{i}.attn_k.weight", kv_width, hidden)
        weight(f"blk.{i}.attn_v.weight", kv_width, hidden)
        weight(f"blk.{i}.attn_output.weight", hidden, hidden)
        weight(f"blk.{i}.ffn_gate.weight", ffn, hidden)
        weight(f"blk.{i}.ffn_up.weight", ffn, hidden)
        weight(f"blk.{i}.ffn_down.weight", hidden, ffn)
    writer.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def test_a_gguf_causal_lm_loads_as_a_plain_float_model(tiny_gguf):
    source = resolve_model(str(tiny_gguf))
    assert source.kind == "gguf"
    tokenizer = load_tokenizer(source)
    model = load_causal_lm(source, tokenizer, torch.float32, torch.device("cpu"))
    assert getattr(model, "hf_quantizer", None) is None and not model.is_quantized
    assert getattr(model.config, "quantization_config", None) is None


def test_a_reward_model_trained_from_a_gguf_base_saves_loads_back_and_scores(tiny_gguf, tmp_path, capsys):
    out = tmp_path / "rm"
    report = train_reward_model_main(
        ["--pairs", "full_scale/data/pairs.jsonl", "--base", str(tiny_gguf), "--out", str(out), "--epochs", "1"]
    )
    assert (out / "model.safetensors").exists() and (out / "config.json").exists()
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    assert json.loads((out / "reward_model_training.json").read_text()) == json.loads(json.dumps(report))
    printed = capsys.readouterr().out
    assert f"held-out pairwise accuracy after training: {report['accuracy_after']:.3f}" in printed

    # The saved model is the trained one: its held-out accuracy after a reload is the one printed.
    loaded = RewardModel.load(str(out), torch.device("cpu"), torch.float32)
    pairs = load_pairs("full_scale/data/pairs.jsonl")
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(0)).tolist()
    held_out = [pairs[i] for i in order[: report["eval_pairs"]]]
    assert pairwise_accuracy(loaded.model, loaded.tokenizer, held_out) == report["accuracy_after"]
    task = FullScaleTask(
        model=str(tiny_gguf), reward="reward_model", reward_model=str(out), max_new_tokens=4, eval_prompts=2
    )
    policy = task.make_policy()
    result = task.evaluate(policy, torch.Generator().manual_seed(0))
    assert {"reward", "win_rate", "reference_reward"} <= set(result)
    records = [task.record(p) for p in task.eval_prompts]
    texts = ["Paris.", "I do not know."]
    assert torch.allclose(loaded.score(records, texts), task.reward_fn.score(records, texts))


def test_the_reward_model_command_is_reproducible_from_its_seed(tiny_gguf, tmp_path):
    """The score head is new (randomly initialised) weights: seeded, two runs print the same accuracies and
    save the same model, whatever the global random state was before."""
    args = ["--pairs", "full_scale/data/pairs.jsonl", "--base", str(tiny_gguf), "--epochs", "1"]
    torch.manual_seed(123)
    first = train_reward_model_main([*args, "--out", str(tmp_path / "a")])
    torch.manual_seed(456)
    second = train_reward_model_main([*args, "--out", str(tmp_path / "b")])
    assert first == second
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
