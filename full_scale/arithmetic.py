"""Procedurally generated arithmetic problems: tier 3's verifiable task (`task.reward=arithmetic`,
the `verifiable` role of task=full_scale), on which Lanchantin et al. 2025 (arXiv:2506.21495) compare offline,
semi-online and online training on a real model in minutes on a CPU.

Each problem is `What is a + b?` (or `-`, `*`) with a prompt that asks for the number alone, so an instruct
model's answer fits in a few tokens; the gold answer is checked with `math-verify` (full_scale.rewards.MathReward).
The operand range sets the difficulty: it is chosen so that the reference, SmolLM2-135M-Instruct sampling at
temperature 1, is right on some problems and wrong on others (accuracy measured in the README), which is what
gives DPO pairs and GRPO groups a signal.
"""

from __future__ import annotations

import random

from alignlab.errors import ConfigError
from full_scale.data import PromptRecord

OPERATIONS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
TEMPLATE = "What is {a} {op} {b}? Reply with only the final number."


def arithmetic_problems(count: int, max_operand: int, operations: str = "+", seed: int = 0) -> list[PromptRecord]:
    """`count` distinct problems a <op> b with operands in 1..max_operand, the same for the same seed."""
    if max_operand < 2:
        raise ConfigError(f"task.max_operand={max_operand} is below 2", "use task.max_operand=2 or more")
    unknown = set(operations) - set(OPERATIONS)
    if not operations or unknown:
        raise ConfigError(
            f"task.operations={operations!r} has no operation or unknown ones {sorted(unknown)}",
            f"use a string of {', '.join(OPERATIONS)}, e.g. task.operations='+'",
        )
    possible = len(set(operations)) * max_operand * max_operand
    if count > possible:
        raise ConfigError(
            f"task.num_problems={count} is more than the {possible} distinct problems of operands 1..{max_operand}",
            "lower task.num_problems or raise task.max_operand",
        )
    rng = random.Random(seed)
    seen, records = set(), []
    while len(records) < count:
        a, b, op = rng.randint(1, max_operand), rng.randint(1, max_operand), rng.choice(operations)
        if (a, op, b) in seen:
            continue
        seen.add((a, op, b))
        question = TEMPLATE.format(a=a, op=op, b=b)
        records.append(PromptRecord([{"role": "user", "content": question}], str(OPERATIONS[op](a, b)), question))
    return records
