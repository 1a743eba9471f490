"""Prompts and preference pairs from local JSONL or parquet files, in the common public formats.

Read with `datasets` (`load_dataset("json" | "parquet", data_files=...)`). Formats, detected per row:

- prompts: `{"prompt": "text"}` or `{"prompt": [messages]}`, optionally with a gold `answer` (or `solution`)
  for the math checker; `{"messages": [...]}` (the prompt is every turn up to the last user turn).
- pairs, UltraFeedback-binarized: `{"prompt": "...", "chosen": [messages], "rejected": [messages]}`, where the
  last message of each list is the assistant's answer.
- pairs, Anthropic hh-rlhf: `{"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected": "..."}`, full
  transcripts that share everything up to the last "\\n\\nAssistant:".
- pairs, plain: `{"prompt": "...", "chosen": "answer", "rejected": "answer"}`.

A malformed row stops the run with a DataError that names the file and the row (1-based).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from alignlab.errors import ConfigError, DataError

Messages = list[dict]
HUMAN, ASSISTANT = "\n\nHuman:", "\n\nAssistant:"


def sample_file(name: str) -> Path:
    """A sample data file shipped in full_scale/data/ (prompts.jsonl, pairs.jsonl)."""
    return Path(str(files("full_scale") / "data" / name))


@dataclass
class PromptRecord:
    messages: Messages  # chat turns, ending with a user turn
    answer: str | None = None  # gold answer for verifiable rewards
    source: str = ""  # "file row N", for error messages

    @property
    def text(self) -> str:
        """The last user turn: what a judge or a reward model is asked about."""
        return self.messages[-1]["content"]


@dataclass
class PairRecord:
    prompt: PromptRecord
    chosen: str
    rejected: str


def read_rows(path: str | Path) -> list[dict]:
    """Rows of a .jsonl/.json (read with `json`, row by row, so that an error names its line) or .parquet file
    (read with pyarrow); each must be a JSON object. Blank lines are skipped."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"data file {path} does not exist", "check the path (task.prompts / task.pairs)")
    if path.is_dir():
        raise DataError(f"data file {path} is a directory", "point task.prompts / task.pairs at a file")
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".parquet"):
        raise DataError(f"data file {path} is not .jsonl, .json or .parquet", "convert it to JSON lines or parquet")
    rows = _parquet_rows(path) if suffix == ".parquet" else _json_rows(path)
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise DataError(
                f"{path} row {number} is a {type(row).__name__}, not a JSON object",
                f'make row {number} an object like {{"prompt": ...}}',
            )
    return rows


def _parquet_rows(path: Path) -> list:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as error:  # pyarrow raises several types; the message is what helps
        raise DataError(
            f"{path} is not a readable parquet file ({type(error).__name__})", "write it with pandas or datasets"
        ) from None


def _json_rows(path: Path) -> list:
    """The rows of a JSON-lines file (or a JSON array file), naming the first line that does not parse."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(
            f"{path} is not UTF-8 text (line {line}, byte {error.start} is 0x{data[error.start]:02x})",
            "convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)",
        ) from None
    if text.lstrip().startswith("["):  # a JSON array file
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"{path} is not valid JSON (line {error.lineno}: {error.msg})", "fix that line") from None
        return rows if isinstance(rows, list) else [rows]
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise DataError(
                f"{path} row {number} is not valid JSON ({error.msg})", f"fix or delete line {number}"
            ) from None
    return rows


def _messages(value, where: str, what: str) -> Messages:
    if not isinstance(value, list) or not value:
        raise DataError(
            f"{where}: {what} is not a non-empty list of messages", 'use [{"role": "user", "content": "..."}, ...]'
        )
    for m in value:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise DataError(
                f"{where}: {what} has a message without a string role and content: {str(m)[:80]}",
                "give every message a role and a content string",
            )
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _prompt_messages(value, where: str) -> Messages:
    if isinstance(value, str):
        if not value.strip():
            raise DataError(f"{where}: the prompt is empty", "write a prompt or delete the row")
        return [{"role": "user", "content": value}]
    messages = _messages(value, where, "prompt")
    if messages[-1]["role"] != "user":
        raise DataError(
            f"{where}: the prompt's last message is from {messages[-1]['role']}, not the user",
            "end each prompt with a user turn",
        )
    return messages


def parse_prompt(row: dict, where: str) -> PromptRecord:
    answer = row.get("answer", row.get("solution"))
    if answer is not None and not isinstance(answer, (str, int, float)):
        raise DataError(f"{where}: answer is a {type(answer).__name__}", "give the gold answer as a string or a number")
    answer = None if answer is None else str(answer)
    if "prompt" in row and row["prompt"] is None and row.get("messages") is None:
        raise DataError(f"{where}: the prompt is null", "write a prompt or delete the row")
    if row.get("prompt") is not None:
        return PromptRecord(_prompt_messages(row["prompt"], where), answer, where)
    if row.get("messages") is not None:
        messages = _messages(row["messages"], where, "messages")
        last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
        if last_user is None:
            raise DataError(f"{where}: messages has no user turn", "add a user message")
        return PromptRecord(messages[: last_user + 1], answer, where)
    raise DataError(
        f"{where}: no 'prompt' or 'messages' field (fields: {', '.join(row)})", "name the prompt field 'prompt'"
    )


def parse_hh(text: str, where: str, what: str) -> tuple[Messages, str]:
    """An hh-rlhf transcript -> (turns up to the last human turn, the final assistant answer)."""
    cut = text.rfind(ASSISTANT)
    if cut < 0 or HUMAN not in text[:cut]:
        raise DataError(
            f"{where}: {what} is not an hh-rlhf transcript (no '\\n\\nHuman:' ... '\\n\\nAssistant:')",
            "use the hh-rlhf, UltraFeedback or plain pair format",
        )
    messages = []
    for chunk in text[:cut].split(HUMAN)[1:]:
        human, *assistants = chunk.split(ASSISTANT)
        messages.append({"role": "user", "content": human.strip()})
        messages.extend({"role": "assistant", "content": a.strip()} for a in assistants)
    return messages, text[cut + len(ASSISTANT) :].strip()


def parse_pair(row: dict, where: str) -> PairRecord:
    chosen, rejected = row.get("chosen"), row.get("rejected")
    if chosen is None or rejected is None:
        raise DataError(
            f"{where}: a pair needs 'chosen' and 'rejected' fields (fields: {', '.join(row)})", "add both fields"
        )
    if type(chosen) is not type(rejected):
        raise DataError(
            f"{where}: chosen is a {type(chosen).__name__} but rejected a {type(rejected).__name__}",
            "give both in the same format",
        )
    if isinstance(chosen, list):  # UltraFeedback-binarized: message lists ending with the assistant's answer
        c, r = _messages(chosen, where, "chosen"), _messages(rejected, where, "rejected")
        for name, turns in (("chosen", c), ("rejected", r)):
            if turns[-1]["role"] != "assistant":
                raise DataError(
                    f"{where}: the last {name} message is from {turns[-1]['role']}, not the assistant",
                    "end chosen and rejected with the assistant's answer",
                )
        if c[:-1]:
            context = c[:-1]
        elif row.get("prompt") is not None:
            context = _prompt_messages(row["prompt"], where)
        else:
            raise DataError(
                f"{where}: no prompt: chosen has only the answer and there is no 'prompt' field",
                "add the user turn or a 'prompt' field",
            )
        if r[:-1] and r[:-1] != context:
            raise DataError(
                f"{where}: chosen and rejected answer different conversations",
                "give both the same turns before the answer",
            )
        prompt, chosen_text, rejected_text = context, c[-1]["content"], r[-1]["content"]
    elif isinstance(chosen, str) and row.get("prompt") is None:  # hh-rlhf transcripts
        prompt, chosen_text = parse_hh(chosen, where, "chosen")
        rejected_prompt, rejected_text = parse_hh(rejected, where, "rejected")
        if rejected_prompt != prompt:
            raise DataError(
                f"{where}: chosen and rejected transcripts differ before the last answer",
                "give both the same turns before the answer",
            )
    elif isinstance(chosen, str):
        prompt, chosen_text, rejected_text = _prompt_messages(row["prompt"], where), chosen, rejected
    else:
        raise DataError(f"{where}: chosen is a {type(chosen).__name__}", "use a string or a list of messages")
    if prompt[-1]["role"] != "user":
        raise DataError(
            f"{where}: the turn before the answers is from {prompt[-1]['role']}, not the user",
            "end the context with a user turn",
        )
    for name, text in (("chosen", chosen_text), ("rejected", rejected_text)):
        if not text.strip():
            raise DataError(f"{where}: the {name} answer is empty", "write an answer or delete the row")
    if chosen_text.strip() == rejected_text.strip():  # a pair with no preference: every loss on it is constant
        raise DataError(
            f"{where}: chosen and rejected are the same answer", "give the row two different answers, or delete it"
        )
    return PairRecord(PromptRecord(prompt, None, where), chosen_text, rejected_text)


def load_prompts(path: str | Path) -> list[PromptRecord]:
    rows = read_rows(path)
    if not rows:
        raise DataError(f"{path} has no rows", "add prompts, one JSON object per line")
    return [parse_prompt(row, f"{path} row {i}") for i, row in enumerate(rows, start=1)]


def held_out_rows(count: int, eval_prompts: int, path: str | Path) -> set[int]:
    """Indices of the held-out evaluation prompts, evenly spaced through the file's `count` prompts; an error
    when that leaves nothing to train on (never silently fewer than asked for)."""
    if count < 2:
        raise DataError(
            f"{path} has {count} usable prompt(s): one is needed to train on and one to hold out",
            "give at least 2 prompts (more than task.eval_prompts)",
        )
    if eval_prompts >= count:
        raise ConfigError(
            f"task.eval_prompts={eval_prompts} holds out every prompt of {path} ({count} prompts)",
            f"set task.eval_prompts to {count - 1} or fewer, or give more prompts",
        )
    step = count / eval_prompts
    return {int(i * step + step - 1) for i in range(eval_prompts)}


def duplicated_held_out(records: list[PromptRecord], held_out: set[int]) -> list[str]:
    """The held-out prompts whose text also appears among the training prompts (they do not measure
    generalisation), as their `source` ("file row N")."""
    train = {json.dumps(r.messages) for i, r in enumerate(records) if i not in held_out}
    return [records[i].source for i in sorted(held_out) if json.dumps(records[i].messages) in train]


def load_pairs(path: str | Path) -> list[PairRecord]:
    rows = read_rows(path)
    if not rows:
        raise DataError(f"{path} has no rows", "add preference pairs, one JSON object per line")
    return [parse_pair(row, f"{path} row {i}") for i, row in enumerate(rows, start=1)]
