"""The documentation's commands run as written: every `alignlab`, `python -m alignlab`, `alignlab-plot` and
`alignlab-data` command in a `bash` block or an inline code span of README.md and of every page under docs/
(a page added later is covered without a new test), so that a renamed option or config breaks this test
rather than a newcomer's first evening.

Each command runs in a subprocess with the smallest budget appended that still shows what it shows (3
iterations, one seed, no figure; tier 3 on the project's tiny random model with short completions), and the
test checks what it wrote, never how fast: the `summary.json` files it names hold a finite reward, the figures
a plot names exist. The timeout is a hang guard only. Left out, with the test that covers each instead:
placeholders (`RUN_DIR`) and elisions (`...`); `alignlab-report` (tests/test_findings.py) and `alignlab-tune`
(tests/test_tune.py), which run whole suites of sweeps; a GPU model or a reward model trained by another command
(tests/test_full_scale*.py); a Slurm cluster."""

import json
import math
import re
import shlex
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, run_cli

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
TINY = ["train.iterations=3", "train.progress=false", "num_seeds=1"]
# Tier 3's budget: the SmolLM2 path itself is exercised by tests/test_full_scale_smollm2.py.
TINY_TIER3 = ["task.model=tiny", "task.max_new_tokens=8", "task.judge_max_new_tokens=8"]
MODULES = {
    "alignlab": "alignlab",
    "alignlab-plot": "alignlab.plots.plot",
    "alignlab-data": "alignlab.storage.data_cli",
}
# No documented command takes 3 minutes on an idle 2-core machine at these budgets: this only stops a hang, on a
# machine ten times slower than that.
HANG_GUARD_S = 1800
# The costliest commands: the self-judge generates a verdict for every scored sample, one at a time.
SLOW = re.compile(r"task\.reward=judge")
SUMMARY_LINE = re.compile(r" -> (.+?summary\.json)\s*$", re.M)  # a run directory named after overrides may hold spaces
SKIPPED_LINE = re.compile(r"^alignlab: (.+?) is already done", re.M)
RUN_PATH = re.compile(r"(?:^|=)((?:outputs|multirun)/[\w.,=/-]+)")


def documented_commands() -> list[str]:
    commands = []
    for document in DOCUMENTS:
        text = document.read_text()
        for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
            commands += [re.split(r"\s#", line)[0].strip() for line in block.splitlines()]
        commands += re.findall(r"`((?:alignlab-plot|alignlab-data|alignlab|python -m alignlab)(?: [^`]*)?)`", text)
    runnable = []
    for command in commands:
        for part in command.split(" then "):
            part = " ".join(part.strip("` \n").split())
            if runnable_command(part) and part not in runnable:
                runnable.append(part)
    return runnable


def runnable_command(command: str) -> bool:
    words = command.split()
    if not words or words[0] not in MODULES and words[:3] != ["python", "-m", "alignlab"]:
        return False
    if words[0] in ("alignlab-plot", "alignlab-data") and len(words) == 1:
        return False  # the program's name in prose, not a command
    if "..." in command or "slurm" in command or re.search(r"\b[A-Z][A-Z_]{2,}\b", command):
        return False  # an elision, a cluster, or a placeholder such as DIR or RUN_DIR
    return "mistral7b" not in command and "task.reward_model=" not in command


COMMANDS = documented_commands()


def test_the_documents_have_the_commands_this_test_runs():
    assert any(c.startswith("alignlab -m experiment=") for c in COMMANDS)
    assert any(c.startswith("alignlab-plot") for c in COMMANDS)
    assert any("task=full_scale" in c for c in COMMANDS)
    assert "alignlab task=bandit algo=dpo sampling=online" in COMMANDS


def budget(words: list[str]) -> tuple[str, list[str]]:
    """The module to run and its arguments, with the smallest budget that still shows what the command shows."""
    if words[0] == "python":
        words = words[2:]
    module, args = MODULES[words[0]], words[1:]
    if module == "alignlab" and not any(a.startswith("--") for a in args):
        args = [*args, *TINY, "plot=false"]
        if "experiment=tajwar_bandit_grid" in args:
            args.append("algo=dpo")  # one objective of the 16: the grid's shape, not its cost
        if "task=full_scale" in args:
            args += TINY_TIER3
    return module, args


def producer(path: str) -> tuple[str, list[str]] | None:
    """The directory that holds `path` and the documented command that writes it (a run another command reads,
    or a sweep that `alignlab-plot` draws)."""
    for command in COMMANDS:
        for word in shlex.split(command):
            run_dir = word.removeprefix("hydra.run.dir=")
            if word.startswith("hydra.run.dir=") and (path == run_dir or path.startswith(run_dir + "/")):
                return run_dir, shlex.split(command)
    if path.startswith("multirun/"):
        experiment = path.split("/")[1]
        return f"multirun/{experiment}", ["alignlab", "-m", f"experiment={experiment}"]
    return None


def ensure_inputs(args: list[str], workdir: Path) -> None:
    """Run first what a command reads (a recording, a finished run, a sweep), so that each test stands alone."""
    for arg in args:
        for path in RUN_PATH.findall(arg):
            written = producer(path)
            if written is None or (workdir / written[0]).exists() or arg == f"hydra.run.dir={written[0]}":
                continue
            module, produce_args = budget(written[1])
            run_cli(produce_args, workdir, module=module, timeout=HANG_GUARD_S)


def check_output(module: str, args: list[str], stdout: str, workdir: Path) -> None:
    """What the command shows: a config, a help text, summaries with a finite reward, the figures it names."""
    if "--cfg" in args:
        assert {"task", "algo", "sampling"} <= set(yaml.safe_load(stdout)), stdout
    elif "--help" in args or "--info" in args:
        assert "algo" in stdout, stdout
    elif module == "alignlab":
        summaries = SUMMARY_LINE.findall(stdout) + [f"{d}/summary.json" for d in SKIPPED_LINE.findall(stdout)]
        assert summaries, f"the command named no summary.json:\n{stdout}"
        for path in summaries:
            summary = json.loads((workdir / path).read_text())
            assert math.isfinite(summary["reward"]), summary
    elif module == "alignlab.plots.plot":
        figures = [line for line in stdout.splitlines() if line.endswith((".png", ".gif", ".csv"))]
        assert figures and all((workdir / figure).is_file() for figure in figures), stdout
    else:
        assert " samples in " in stdout.splitlines()[0], stdout


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("docs")


@pytest.mark.parametrize(
    "command", [pytest.param(c, marks=pytest.mark.slow) if SLOW.search(c) else c for c in COMMANDS]
)
def test_documented_command_runs(command, workdir):
    module, args = budget(shlex.split(command))
    ensure_inputs(args, workdir)
    proc = run_cli(args, workdir, module=module, timeout=HANG_GUARD_S)
    assert "error" not in proc.stderr.lower(), proc.stderr
    check_output(module, args, proc.stdout, workdir)
