"""Rollout recordings: every round's scored samples as Parquet, and recordings read back as offline data.

A recording is a directory `rollouts.parquet/` of one Parquet file per round (`round-000001.parquet`, ...), a
layout that pyarrow, pandas (`pd.read_parquet`) and Hugging Face `datasets` read as one table. A round's file
is written atomically when the round ends, so a killed run loses nothing it had finished; a resumed run first
removes the files of rounds after its checkpoint, so the file has no duplicates.

One row per completion. Columns:
- `round` (1-based iteration), `sync` (the sampler's refresh count when it was drawn), `group` (prompt index
  within the round), `samples_per_prompt`;
- the prompt: `prompt` (an int: a bandit context) or `prompt_tokens` (a list of token ids);
- the completion: `completion` (an int: a bandit arm) or `completion_tokens` (the generated token ids, end
  token included, padding excluded);
- `reward` (what the objective trained on) and `reward/<name>` for each component of a mixed reward;
- `behaviour_logp` (log-prob of the whole completion under the policy that sampled it) and
  `behaviour_token_logps` (per token), so that replayed data keeps its importance ratios; every row has them.
  A row of offline data (`offline` true: sampling=offline, or the offline share of a round with
  `sampling.offline_fraction`) carries the dataset's own behaviour log-probs, or the reference's when the
  dataset has none (the task's reference samples, whose sampler is the reference; a preference-pairs file,
  for which the reference's are the stand-in training uses too);
- `prompt_text` / `completion_text` on language-model tiers (for reading; training uses the token ids).
The file's metadata names the task and the completion type, so a recording of another task is refused.

Tang et al. 2024 (arXiv:2405.08448) train offline on the shuffled samples of an online run; training offline
on a recording in `recorded` order replays the online run's updates exactly.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import torch

from alignlab.core.types import LogProbs, Rollout
from alignlab.errors import ConfigError, DataError
from alignlab.storage.rundir import atomic_write_bytes

ROLLOUTS = "rollouts.parquet"
ORDERS = ("recorded", "shuffled")
METADATA_KEY = b"alignlab"


def _pa():
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pa, pq


# ---- encoding a rollout as columns ------------------------------------------------------------------------
def _is_token_batch(completions) -> bool:
    return hasattr(completions, "tokens") and hasattr(completions, "mask")


def encode_prompts(prompts: list) -> tuple[str, list]:
    first = prompts[0]
    if isinstance(first, int) or (isinstance(first, torch.Tensor) and first.dim() == 0):
        return "prompt", [int(p) for p in prompts]
    return "prompt_tokens", [torch.as_tensor(p).tolist() for p in prompts]


def encode_completions(completions) -> tuple[str, list]:
    if _is_token_batch(completions):
        mask = completions.mask > 0
        return "completion_tokens", [row[m].tolist() for row, m in zip(completions.tokens, mask, strict=True)]
    return "completion", torch.as_tensor(completions).tolist()


def _text(task, column: str, values: list) -> list[str] | None:
    tokenizer = getattr(task, "tokenizer", None)
    if tokenizer is None or not column.endswith("_tokens"):
        return None
    return [tokenizer.decode(v) for v in values]


def rollout_columns(task, rollout: Rollout, round_number: int, sync: int) -> dict[str, list]:
    """The recording's columns for one round (see the module docstring)."""
    n = rollout.samples_per_prompt
    prompt_key, prompts = encode_prompts(rollout.prompts)
    completion_key, completions = encode_completions(rollout.completions)
    columns = {
        "round": [round_number] * len(rollout),
        "sync": [sync] * len(rollout),
        "group": [i // n for i in range(len(rollout))],
        "samples_per_prompt": [n] * len(rollout),
        prompt_key: prompts,
        completion_key: completions,
        "reward": rollout.rewards.tolist(),
    }
    for key, value in rollout.extras.items():
        if key.startswith("reward/"):
            columns[key] = value.tolist()
    if "offline" in rollout.extras:
        columns["offline"] = (rollout.extras["offline"] > 0).tolist()
    if rollout.old_logps is not None:
        logps = rollout.old_logps
        columns["behaviour_logp"] = logps.sum().tolist()
        columns["behaviour_token_logps"] = [t[m > 0].tolist() for t, m in zip(logps.tokens, logps.mask, strict=True)]
    for key, values in ((prompt_key, prompts), (completion_key, completions)):
        text = _text(task, key, values)
        if text is not None:
            columns[key.replace("_tokens", "_text")] = text
    return columns


def check_recordable() -> None:
    """A multi-process run (accelerate launch) is refused: each process draws its own share of every round's
    prompts and only rank 0 writes the run directory, so the other ranks' samples would be missing."""
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    if processes > 1:
        raise ConfigError(
            f"record_rollouts=true on {processes} processes would record only rank 0's share of each round",
            "record on one process (without accelerate launch), or set record_rollouts=false",
        )


class Recorder:
    """Writes one Parquet file per round into `<run_dir>/rollouts.parquet/`."""

    def __init__(self, run_dir: Path, task, resume_after: int = 0):
        self.directory = Path(run_dir) / ROLLOUTS
        self.task = task
        self.directory.mkdir(parents=True, exist_ok=True)
        for part in self.directory.glob("round-*.parquet"):  # rounds after the checkpoint will be redone
            if int(part.stem.split("-")[1]) > resume_after:
                part.unlink()

    def write(self, rollout: Rollout, round_number: int, sync: int) -> None:
        pa, pq = _pa()
        table = pa.table(rollout_columns(self.task, rollout, round_number, sync))
        completion_type = type(rollout.completions)
        metadata = {
            "task": getattr(self.task, "name", ""),
            "completion_type": f"{completion_type.__module__}.{completion_type.__qualname__}",
        }
        table = table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata).encode()})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        atomic_write_bytes(self.directory / f"round-{round_number:06d}.parquet", sink.getvalue().to_pybytes())


# ---- reading a recording back -----------------------------------------------------------------------------
def _files(path: Path) -> list[Path]:
    if path.is_dir():
        nested = path / ROLLOUTS
        if nested.is_dir():  # a run directory
            path = nested
        return sorted(path.glob("*.parquet"))
    return [path]


def read_table(path: str | Path):
    """The recording at `path` (a run directory, a rollouts.parquet directory, a .parquet or .jsonl file) as a
    pandas DataFrame sorted by round, with its metadata; a one-line DataError when it cannot be used."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise DataError(
            f"the recording {path} does not exist",
            "give a run directory that was run with record_rollouts=true, or its rollouts.parquet",
        )
    metadata: dict = {}
    if path.suffix == ".jsonl":
        frame = pd.read_json(path, lines=True)
    else:
        files = _files(path)
        if not files:
            raise DataError(f"the recording {path} holds no Parquet file", "record a run with record_rollouts=true")
        _, pq = _pa()
        try:
            tables = [pq.read_table(f) for f in files]
        except Exception as error:  # pyarrow raises several types for a damaged file
            raise DataError(f"the recording {path} cannot be read as Parquet ({error})", "record it again") from None
        raw = tables[0].schema.metadata or {}
        if METADATA_KEY in raw:
            metadata = json.loads(raw[METADATA_KEY])
        frame = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
    if len(frame) == 0:
        raise DataError(f"the recording {path} is empty", "record a run that takes at least one round")
    if "round" not in frame:
        frame["round"] = 1
    return frame.sort_values(["round"], kind="stable").reset_index(drop=True), metadata


def check_schema(frame, metadata: dict, task, path) -> None:
    """Refuse a recording of another task or with columns this task cannot read."""
    recorded = metadata.get("task")
    if recorded and recorded != getattr(task, "name", recorded):
        raise DataError(
            f"the recording {path} is of task {recorded}, this run's task is {task.name}",
            f"train with task={recorded}, or give a recording of {task.name}",
        )
    missing = [c for c in ("reward",) if c not in frame]
    if not any(c in frame for c in ("prompt", "prompt_tokens")):
        missing.append("prompt or prompt_tokens")
    if not any(c in frame for c in ("completion", "completion_tokens")):
        missing.append("completion or completion_tokens")
    if missing:
        raise DataError(
            f"the recording {path} lacks the column(s) {', '.join(missing)}",
            "give a file in alignlab's recording schema (see alignlab/storage/recording.py)",
        )


def _completion_type(task, metadata: dict):
    name = metadata.get("completion_type", "")
    if name:
        module, _, qualname = name.rpartition(".")
        try:
            return getattr(importlib.import_module(module), qualname)
        except (ImportError, AttributeError):
            pass
    return getattr(task, "completion_type", None)


def decode(frame, task, metadata: dict, samples_per_prompt: int) -> Rollout:
    """Rows of a recording as a Rollout (prompt-major groups of `samples_per_prompt`)."""
    if "prompt" in frame:
        prompts = [int(p) for p in frame["prompt"]]
    else:
        prompts = [torch.tensor(list(p), dtype=torch.long) for p in frame["prompt_tokens"]]
    if "completion" in frame:
        completions = torch.tensor(frame["completion"].to_numpy(), dtype=torch.long)
    else:
        cls = _completion_type(task, metadata)
        if cls is None:
            raise DataError("the recording holds token completions but names no completion type", "record it again")
        rows = [list(c) for c in frame["completion_tokens"]]
        width = max(len(r) for r in rows)
        tokens = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width)
        for i, r in enumerate(rows):
            tokens[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1.0
        completions = cls(tokens, mask)
    rewards = torch.tensor(frame["reward"].to_numpy(), dtype=torch.float32)
    extras = {c: torch.tensor(frame[c].to_numpy(), dtype=torch.float32) for c in frame if c.startswith("reward/")}
    old_logps = None
    missing = frame["behaviour_token_logps"].isna() if "behaviour_token_logps" in frame else None
    if missing is not None and missing.any() and not missing.all():
        raise DataError(
            f"{int(missing.sum())} of the recording's {len(frame)} rows have no behaviour_token_logps",
            "give every row its behaviour log-probs, or drop the column (the reference's are then used)",
        )
    if missing is not None and not missing.all():
        rows = [list(r) for r in frame["behaviour_token_logps"]]
        width = max(len(r) for r in rows)
        tokens = torch.zeros(len(rows), width)
        mask = torch.zeros(len(rows), width)
        for i, r in enumerate(rows):
            tokens[i, : len(r)] = torch.tensor(r, dtype=torch.float32)
            mask[i, : len(r)] = 1.0
        old_logps = LogProbs(tokens, mask)
    return Rollout(prompts, completions, rewards, samples_per_prompt, old_logps=old_logps, extras=extras)


class Recording:
    """A recording read back for offline training: its rounds in `recorded` order, or its prompt groups in
    shuffled passes (`shuffled`, drawn with the run's generator)."""

    def __init__(self, path: str | Path, task, samples_per_prompt: int):
        frame, metadata = read_table(path)
        check_schema(frame, metadata, task, path)
        if "samples_per_prompt" in frame:
            recorded = int(frame["samples_per_prompt"].iloc[0])
            if recorded != samples_per_prompt:
                raise DataError(
                    f"the recording {path} has {recorded} completions per prompt, "
                    f"sampling.samples_per_prompt={samples_per_prompt}",
                    f"set sampling.samples_per_prompt={recorded}",
                )
        if len(frame) % samples_per_prompt:
            raise DataError(
                f"the recording {path} has {len(frame)} rows, not a multiple of "
                f"samples_per_prompt={samples_per_prompt}",
                "give whole prompt groups",
            )
        self.path = path
        self.frame = frame
        self.metadata = metadata
        self.samples_per_prompt = samples_per_prompt
        self.rounds = sorted(int(r) for r in frame["round"].unique())
        self.data = decode(frame, task, metadata, samples_per_prompt)

    def round(self, index: int) -> Rollout:
        """The `index`-th recorded round (0-based); DataError past the end."""
        if index >= len(self.rounds):
            raise DataError(
                f"the recording {self.path} has {len(self.rounds)} rounds, the run asks for round {index + 1}",
                f"set train.iterations={len(self.rounds)} or less, or use sampling.dataset_order=shuffled",
            )
        rows = torch.nonzero(torch.tensor((self.frame["round"] == self.rounds[index]).to_numpy()))[:, 0]
        return trim(self.data.select(rows, samples_per_prompt=self.samples_per_prompt))


def trim(rollout: Rollout) -> Rollout:
    """Drop padding columns that no completion of this rollout uses, so that a replayed round has the shape the
    online round had (and the same floating-point sums)."""
    completions = rollout.completions
    if not _is_token_batch(completions):
        return rollout
    width = int(completions.mask.sum(1).max())
    rollout.completions = type(completions)(completions.tokens[:, :width], completions.mask[:, :width])
    if rollout.old_logps is not None:
        rollout.old_logps = LogProbs(rollout.old_logps.tokens[:, :width], rollout.old_logps.mask[:, :width])
    return rollout
