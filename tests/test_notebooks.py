"""The lessons in notebooks/: each .ipynb is its paired jupytext script, without outputs. (`make test` executes
them with nbmake: `pytest --nbmake notebooks`.)"""

from pathlib import Path

import pytest

from alignlab.runs.api import missing_kernel

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SCRIPTS = sorted(NOTEBOOKS.glob("[0-9]*.py"))


def test_there_is_a_notebook_per_walkthrough_finding():
    names = [p.stem for p in SCRIPTS]
    assert names == [
        "01_on_policy_sampling",
        "02_negative_gradient",
        "03_sample_reuse_and_batch_size",
        "04_semi_online_sync",
        "05_kl_budget",
    ]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_each_ipynb_is_its_script_without_outputs(script):
    jupytext = pytest.importorskip("jupytext")
    paired = script.with_suffix(".ipynb")
    assert paired.exists(), f"{paired.name} is missing. Fix: jupytext --to ipynb {script.name}"
    text, notebook = jupytext.read(script), jupytext.read(paired)
    sources = [(c.cell_type, c.source) for c in text.cells]
    assert [(c.cell_type, c.source) for c in notebook.cells] == sources, f"Fix: jupytext --sync {script.name}"
    assert all(not c.get("outputs") and not c.get("execution_count") for c in notebook.cells if c.cell_type == "code")
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    assert sum("## Questions" in c.source for c in text.cells) == 1


def test_a_missing_kernel_is_one_line_naming_the_fix():
    pytest.importorskip("jupyter_client")
    message = missing_kernel("no-such-kernel")
    assert message == (
        "no Jupyter kernel named 'no-such-kernel' (the notebooks' kernel). Fix: pip install 'alignlab[notebooks]' "
        "(it brings ipykernel), or python -m ipykernel install --user."
    )
    assert missing_kernel("python3") is None
