"""The README's commands run, as written, with tiny budgets appended (so that a renamed option or config
in the code breaks this test rather than a newcomer's first evening). Tier-3 commands run on the tiny model;
the SmolLM2 path itself is exercised by tests/test_full_scale_smollm2.py."""

import re
import shlex

import pytest

from tests.conftest import REPO, run_cli

TINY = ["train.iterations=3", "train.progress=false", "num_seeds=1"]


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        commands += [line.split("#")[0].strip() for line in block.splitlines()]
    commands += re.findall(r"`((?:alignlab-plot|alignlab)(?: [^`]*)?)`", text)
    runnable = []
    for command in commands:
        if not command.startswith(("alignlab", "python -m alignlab")) or "..." in command or "slurm" in command:
            continue
        if re.search(r"\b[A-Z][A-Z_]{2,}\b", command):  # a placeholder such as DIR or RUN_DIR
            continue
        # A GPU model, and a reward model trained by an earlier command: tests/test_full_scale*.py cover them.
        if "mistral7b" in command or "task.reward_model=" in command:
            continue
        for part in command.split(" then "):
            part = part.strip().strip("`")
            if part not in runnable:
                runnable.append(part)
    return runnable


COMMANDS = readme_commands()


def test_the_readme_has_the_commands_this_test_runs():
    assert any(c.startswith("alignlab -m experiment=") for c in COMMANDS)
    assert any(c.startswith("alignlab-plot") for c in COMMANDS)
    assert "alignlab" in COMMANDS


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("readme")


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_runs(command, workdir):
    words = shlex.split(command)
    modules = {"alignlab-plot": "alignlab.plots.plot", "alignlab-data": "alignlab.storage.data_cli"}
    module = modules.get(words[0], "alignlab")
    args = words[1:] if words[0] != "python" else words[3:]
    if module == "alignlab" and not any(a.startswith("--") for a in args):
        args = args + TINY + ["plot=false"]
        if "experiment=tajwar_bandit_grid" in args:
            args.append("algo=dpo")  # one objective of the 16: the grid's shape, not its cost
        if "task=full_scale" in args:
            args.append("task.model=tiny")  # the same code path as SmolLM2, in a second
    if module == "alignlab.plots.plot":
        sweep = workdir / args[0]
        if not sweep.exists():  # the sweep this command plots: run it first, tiny
            experiment = args[0].split("/")[-1]
            run_cli(["-m", f"experiment={experiment}", *TINY, "plot=false"], workdir)
    proc = run_cli(args, workdir, module=module)
    assert "error" not in proc.stderr.lower(), proc.stderr
