"""Rollout recordings: every round's scored samples as Parquet, and recordings read back as offline data.

A recording is a directory `rollouts.parquet/` of one Parquet file per round (`round-000001.parquet`, ...), a
layout that pyarrow, pandas (`pd.read_parquet`) and Hugging Face `datasets` read as one table, and a manifest
`_manifest.json` (a leading underscore: those readers skip it) naming its task, n, schema, and every round with
its file, row count and SHA-256. A round's file is written atomically when the round is drawn, then the
manifest, so a killed run loses nothing it had finished; a resumed run first removes the rounds after its
checkpoint, so the recording has no duplicates. A recording turned on when a run resumes starts at that round:
its manifest says so (`first_round`), and a replay in recorded order refuses it.

Reading one back checks it whole: a round missing, extra (a stray file), of another recording or damaged is
refused in one line, and so are values the task cannot have (an arm out of range or not whole, a non-finite
reward, a behaviour log-prob above 0).

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

import hashlib
import importlib
import json
import math
import os
import re
from pathlib import Path

import torch

from alignlab.core.types import LogProbs, Rollout
from alignlab.errors import ConfigError, DataError
from alignlab.storage.rundir import atomic_write_bytes

ROLLOUTS = "rollouts.parquet"
MANIFEST = "_manifest.json"
MANIFEST_FORMAT = "alignlab-recording/1"
ROUND_FILE = re.compile(r"round-(\d{6})\.parquet")
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


def round_file(round_number: int) -> str:
    return f"round-{round_number:06d}.parquet"


def read_manifest(directory: Path) -> dict | None:
    """The manifest of a recording directory (None: it has none), or a DataError when it is unreadable."""
    path = Path(directory) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
        if manifest.get("format") != MANIFEST_FORMAT or not isinstance(manifest.get("rounds"), list):
            raise ValueError("not a recording manifest")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as error:
        raise DataError(
            f"the recording manifest {path} is damaged ({type(error).__name__})", "record the run again (force=true)"
        ) from None
    return manifest


def stray_files(directory: Path, manifest: dict) -> list[str]:
    """Files of a recording directory that its manifest does not list (temporaries and `_` or `.` files aside)."""
    listed = {entry["file"] for entry in manifest["rounds"]}
    return sorted(
        p.name for p in Path(directory).iterdir() if not p.name.startswith(("_", ".")) and p.name not in listed
    )


class Recorder:
    """Writes one Parquet file per round into `<run_dir>/rollouts.parquet/`, and the manifest after each."""

    def __init__(self, run_dir: Path, task, samples_per_prompt: int, resume_after: int = 0):
        self.directory = Path(run_dir) / ROLLOUTS
        self.task = task
        self.directory.mkdir(parents=True, exist_ok=True)
        manifest = read_manifest(self.directory) or {
            "format": MANIFEST_FORMAT,
            "task": getattr(task, "name", ""),
            "samples_per_prompt": samples_per_prompt,
            "first_round": resume_after + 1,
            "rounds": [],
        }
        for name in stray_files(self.directory, manifest):
            match = ROUND_FILE.fullmatch(name)
            if match is None:
                raise DataError(
                    f"the recording {self.directory} holds {name}, which is not a round alignlab wrote",
                    f"move {name} out of {self.directory}, then re-run",
                )
            if int(match.group(1)) <= resume_after:
                raise DataError(
                    f"the recording {self.directory} holds {name}, which its manifest does not list",
                    "record the run again (force=true), or move the file out",
                )
        # rounds after the checkpoint will be drawn again
        kept = [entry for entry in manifest["rounds"] if entry["round"] <= resume_after]
        for name in stray_files(self.directory, {"rounds": kept}):
            (self.directory / name).unlink()
        last = kept[-1]["round"] if kept else manifest["first_round"] - 1
        if last != resume_after:
            raise ConfigError(
                f"the recording {self.directory} stops at round {last} and the run resumes after round "
                f"{resume_after}: the rounds between were run with record_rollouts=false",
                "force=true to run again from the start with the recording, or record_rollouts=false to finish "
                "without it",
            )
        self.manifest = {**manifest, "rounds": kept}
        if not kept:
            self.manifest["first_round"] = resume_after + 1
        self._write_manifest()

    def _write_manifest(self) -> None:
        text = json.dumps(self.manifest, separators=(",", ":"))
        atomic_write_bytes(self.directory / MANIFEST, text.encode())

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
        data = sink.getvalue().to_pybytes()
        atomic_write_bytes(self.directory / round_file(round_number), data)
        if "schema" not in self.manifest:
            self.manifest["schema"] = {field.name: str(field.type) for field in table.schema}
        entry = {"round": round_number, "file": round_file(round_number), "rows": len(table)}
        self.manifest["rounds"].append({**entry, "sha256": hashlib.sha256(data).hexdigest()})
        self._write_manifest()


# ---- reading a recording back -----------------------------------------------------------------------------
def _recording_directory(path: Path) -> Path | None:
    if path.is_dir():
        nested = path / ROLLOUTS
        return nested if nested.is_dir() else path  # a run directory, or the recording itself
    return None


def verified_files(directory: Path) -> tuple[list[Path], dict]:
    """The round files of a recording directory in order, once its manifest vouches for each, and the manifest;
    a one-line DataError naming the first round that is missing, extra, of another recording or damaged."""
    manifest = read_manifest(directory)
    if manifest is None:
        raise DataError(
            f"the recording {directory} has no manifest ({MANIFEST}), so its rounds cannot be checked (recorded "
            "by an older alignlab, or the manifest was lost)",
            "record the run again with record_rollouts=true force=true, or join its rounds into one .parquet file "
            "and give that file",
        )
    stray = stray_files(directory, manifest)
    if stray:
        raise DataError(
            f"the recording {directory} holds {', '.join(stray[:3])}, which its manifest does not list (a stray "
            "copy, or a round of another recording)",
            f"move {'them' if len(stray) > 1 else 'it'} out of {directory}",
        )
    files = []
    for entry in manifest["rounds"]:
        path = directory / entry["file"]
        if not path.is_file():
            raise DataError(
                f"round {entry['round']} ({entry['file']}) is missing from the recording {directory}",
                "restore the file, or record the run again (force=true)",
            )
        if hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
            raise DataError(
                f"round {entry['round']} ({entry['file']}) of the recording {directory} does not match its checksum "
                "in the manifest (damaged, or replaced by a round of another recording)",
                "restore the file, or record the run again (force=true)",
            )
        files.append(path)
    return files, manifest


def read_table(path: str | Path):
    """The recording at `path` (a run directory, a rollouts.parquet directory, a .parquet or .jsonl file) as a
    pandas DataFrame sorted by round, with its metadata (a directory's manifest under "manifest"); a one-line
    DataError when it cannot be used."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise DataError(
            f"the recording {path} does not exist",
            "give a run directory that was run with record_rollouts=true, or its rollouts.parquet",
        )
    metadata: dict = {}
    directory = _recording_directory(path)
    if path.suffix == ".jsonl":
        try:
            frame = pd.read_json(path, lines=True)
        except ValueError as error:
            first = (str(error).splitlines() or ["?"])[0]
            raise DataError(
                f"the recording {path} is not JSON lines ({first})", "give one JSON object a line"
            ) from None
    else:
        if directory is not None and not any(directory.iterdir()):
            raise DataError(f"the recording {path} holds no Parquet file", "record a run with record_rollouts=true")
        files, manifest = verified_files(directory) if directory is not None else ([path], None)
        if not files:
            raise DataError(f"the recording {path} holds no round", "record a run that takes at least one round")
        _, pq = _pa()
        try:
            tables = [pq.read_table(f) for f in files]
        except Exception as error:  # pyarrow raises several types for a damaged file
            first = (str(error).splitlines() or [type(error).__name__])[0]
            raise DataError(f"the recording {path} cannot be read as Parquet ({first})", "record it again") from None
        raw = tables[0].schema.metadata or {}
        if METADATA_KEY in raw:
            metadata = json.loads(raw[METADATA_KEY])
        if manifest is not None:
            metadata["manifest"] = manifest
            for f, table, entry in zip(files, tables, manifest["rounds"], strict=True):
                columns = list(manifest.get("schema", table.schema.names))
                if table.num_rows != entry["rows"] or table.schema.names != columns:
                    raise DataError(
                        f"round {entry['round']} ({f.name}) of the recording {directory} does not have the rows "
                        "and columns its manifest lists",
                        "record the run again (force=true)",
                    )
        frame = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
    if len(frame) == 0:
        raise DataError(f"the recording {path} is empty", "record a run that takes at least one round")
    if "round" not in frame:
        frame["round"] = 1
    return frame.sort_values(["round"], kind="stable").reset_index(drop=True), metadata


def check_values(frame, task, path) -> None:
    """Refuse values the task cannot have: an arm that is not whole or out of range, a prompt out of range, a
    reward that is not finite, a behaviour log-prob above 0 (a probability above 1)."""
    import numpy as np

    def refuse(column: str, mask, what: str, fix: str) -> None:
        rows = np.flatnonzero(np.asarray(mask))
        if len(rows):
            value = frame[column].iloc[rows[0]]
            raise DataError(
                f"the recording {path} has {column}={value} in row {rows[0] + 1} ({len(rows)} such "
                f"row{'s' if len(rows) > 1 else ''}): {what}",
                fix,
            )

    rewards = pd_numeric(frame["reward"])
    refuse("reward", ~np.isfinite(rewards), "rewards must be finite numbers", "drop or fix those rows")
    arms = getattr(task, "num_arms", None)
    for column, count in (("completion", arms), ("prompt", getattr(task, "num_train_contexts", None))):
        if column not in frame or (column == "prompt" and count is None):
            continue
        values = pd_numeric(frame[column])
        whole = np.isfinite(values) & (values == np.round(values))
        refuse(column, ~whole, f"a {column} is a whole number", "drop or fix those rows")
        if count is not None:
            refuse(
                column,
                (values < 0) | (values >= count),
                f"this task's {column}s are 0..{count - 1}",
                "drop or fix those rows",
            )
    if "behaviour_logp" in frame:
        logps = pd_numeric(frame["behaviour_logp"])
        present = ~np.isnan(logps)
        bad = present & (~np.isfinite(logps) | (logps > 1e-6))
        refuse("behaviour_logp", bad, "a log-probability is finite and at most 0", "drop or fix those rows")
    if "behaviour_token_logps" in frame:
        bad = [
            r is not None and not (isinstance(r, float) and math.isnan(r)) and any(not (x <= 1e-6) for x in r)
            for r in frame["behaviour_token_logps"]
        ]
        refuse("behaviour_token_logps", bad, "log-probabilities are finite and at most 0", "drop or fix those rows")


def pd_numeric(series):
    """A column as float64 (NaN where a value is not a number)."""
    import pandas as pd

    return pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64")


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
        check_values(frame, task, path)
        manifest = metadata.get("manifest")
        self.first_round = 1 if manifest is None else manifest["first_round"]
        # what provenance records: the manifest holds every round's checksum; a single file is its own
        text = json.dumps(manifest, sort_keys=True).encode() if manifest is not None else Path(path).read_bytes()
        self.digest = hashlib.sha256(text).hexdigest()
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
