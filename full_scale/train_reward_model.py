"""Train a reward model on preference pairs with the Bradley-Terry loss: the first stage of classic RLHF
(Ouyang et al. 2022, arXiv:2203.02155, Sec. 3.5), whose output is `task.reward=reward_model`.

    python -m full_scale.train_reward_model --pairs full_scale/data/pairs.jsonl --base smollm2 --out rm/
    alignlab task=full_scale task.reward=reward_model task.reward_model=rm/

The base is any causal LM (a local directory, `smollm2`, `tiny` or a hub id): its trunk gets a fresh scalar
head (AutoModelForSequenceClassification, num_labels=1). A share of the pairs is held out and the pairwise
accuracy on it, r(chosen) > r(rejected), is printed before and after training.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from alignlab.errors import AlignlabError
from full_scale.data import load_pairs
from full_scale.models import forget_gguf_quantization, from_source, load_tokenizer, pick_device, resolve_model
from full_scale.rewards import pairwise_accuracy, train_reward_model


def load_base(spec: str, device: torch.device):
    """(sequence classifier with a new 1-output head, tokenizer) from a causal LM."""
    from transformers import AutoModelForSequenceClassification

    from full_scale.tiny import tiny_reward_model

    source = resolve_model(spec)
    tokenizer = load_tokenizer(source, chat_template=None) if source.kind != "hub" else None
    if source.kind == "tiny":
        return tiny_reward_model(tokenizer).to(device), tokenizer
    tokenizer = tokenizer or load_tokenizer(source)
    model = from_source(
        AutoModelForSequenceClassification,
        source,
        "base model",
        "pass --base a causal LM directory, smollm2 or tiny",
        num_labels=1,
        dtype=torch.float32,
    )
    if source.gguf_file:  # dequantized on load: save it as plain safetensors
        forget_gguf_quantization(model)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(device), tokenizer


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--pairs", required=True, help="preference pairs (.jsonl or .parquet; UltraFeedback, hh-rlhf or plain)"
    )
    parser.add_argument(
        "--base", default="smollm2", help="causal LM to start from: a directory, smollm2, tiny or a hub id"
    )
    parser.add_argument("--out", required=True, help="directory for the trained reward model and its tokenizer")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--eval-fraction", type=float, default=0.25, help="share of the pairs held out for accuracy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    try:
        pairs = load_pairs(args.pairs)
        order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(args.seed)).tolist()
        held = max(1, int(round(args.eval_fraction * len(pairs))))
        train_pairs, eval_pairs = [pairs[i] for i in order[held:]], [pairs[i] for i in order[:held]]
        torch.manual_seed(args.seed)  # the new score head's initialisation, so "before training" is reproducible
        model, tokenizer = load_base(args.base, pick_device(args.device))
    except AlignlabError as error:
        print(f"train_reward_model: error: {error}", file=sys.stderr)
        sys.exit(2)
    before = pairwise_accuracy(model, tokenizer, eval_pairs)
    print(f"held-out pairwise accuracy before training: {before:.3f} ({len(eval_pairs)} pairs)")
    torch.manual_seed(args.seed)
    history = train_reward_model(
        model, tokenizer, train_pairs, args.epochs, args.lr, args.batch_size, args.seed, log=print
    )
    after = pairwise_accuracy(model, tokenizer, eval_pairs)
    print(f"held-out pairwise accuracy after training: {after:.3f}")
    out = Path(args.out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    report = {
        "accuracy_before": before,
        "accuracy_after": after,
        "losses": history,
        "train_pairs": len(train_pairs),
        "eval_pairs": len(eval_pairs),
    }
    (out / "reward_model_training.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"reward model -> {out}")
    return report


if __name__ == "__main__":
    main()
