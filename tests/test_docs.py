"""The README and the documentation site: what a newcomer reads first is short, its links resolve, the commands
it shows after `make demo` can run in a new shell, and the tier-1 grid table is built from a complete grid.
(`make docs`, which `make test` runs, builds the site strictly: a broken link inside docs/ fails there.)"""

import csv
import importlib.util
import re

import pytest

from tests.conftest import REPO

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
README = (REPO / "README.md").read_text()
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def load_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", REPO / "docs" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    return hooks


def test_the_readme_is_short():
    assert len(README.splitlines()) <= 250


def test_every_relative_link_of_the_readme_resolves():
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    relative = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert relative
    missing = [link for link in relative if not (REPO / link).exists()]
    assert not missing, f"README.md links to {missing}, which do not exist"


def test_after_make_demo_the_readme_says_how_to_run_the_next_commands():
    """`make demo` installs into .venv without activating it, and only the core: the README must say, before the
    first `alignlab` command it shows, how to put .venv on the path, and name `make setup-lm` for tiers 2 and 3."""
    demo = README.index("make demo")
    first_command = README.index("\nalignlab ")
    assert demo < README.index("source .venv/bin/activate") < first_command
    assert demo < README.index("make setup-lm") < README.index("task=synthetic_llm algo=")
    assert "jupyter lab notebooks/" in README
    assert "source $(VENV)/bin/activate" in (REPO / "Makefile").read_text()  # make demo and setup-lm say it too


def test_the_extras_the_readme_names_are_installed_by_make_setup_lm():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert any(requirement.startswith("jupyterlab") for requirement in extras["notebooks"])
    assert any(requirement.startswith("mkdocs-material") for requirement in extras["docs"])
    makefile = (REPO / "Makefile").read_text()
    installed = re.search(r'-e "\.\[([a-z,]+)\]"', makefile).group(1).split(",")
    assert {"lm", "dev", "notebooks", "docs"} <= set(installed)
    assert re.search(r"^test: docs$", makefile, re.M) and "mkdocs build --strict" in makefile


def test_every_program_the_documents_name_is_installed():
    scripts = set(PYPROJECT["project"]["scripts"])
    named = set()
    for document in DOCUMENTS:
        named |= set(re.findall(r"(?<![\w/.-])(alignlab-[a-z]+)\b", document.read_text()))
    assert named and named <= scripts, named - scripts


def test_the_grid_table_is_every_objective_online_and_offline_on_both_rewards():
    hooks = load_hooks()
    table = hooks.grid_table(REPO / "figures" / "tajwar_bandit_grid_final.csv").splitlines()
    algos = sorted(p.stem for p in (REPO / "conf" / "algo").glob("*.yaml"))
    assert table[0] == "| algo | R1 online | R1 offline | R2 online | R2 offline |"
    assert [row.split("`")[1] for row in table[2:]] == algos
    for row in table[2:]:
        cells = row.strip("|").split("|")[1:]
        assert len(cells) == 4 and all(re.fullmatch(r" [01]\.\d{3} ± \d\.\d{3} ", cell) for cell in cells), row
    with (REPO / "figures" / "tajwar_bandit_grid_final.csv").open() as f:
        jobs = list(csv.reader(f))[3:]
    assert len(jobs) == 4 * len(algos) and all(job[1] == "10" for job in jobs)  # 10 seeds a job


def test_the_grid_page_asks_for_the_table():
    page = (REPO / "docs" / "tiers" / "bandit.md").read_text()
    assert load_hooks().GRID_MARKER.search(page).group(1) == "figures/tajwar_bandit_grid_final.csv"


def test_the_api_reference_has_a_page_for_the_modules_a_newcomer_reads_first():
    modules = load_hooks().api_modules()
    assert {"alignlab.core.losses", "alignlab.core.train", "bandits.task"} <= set(modules)
    assert all(not part.startswith("_") for name in modules for part in name.split("."))


def test_links_out_of_docs_are_rewritten_for_the_site_and_a_missing_target_is_left_to_fail():
    rewrite = load_hooks().repository_links
    page = "![fig](../../figures/default_run.png) [losses](../../alignlab/core/losses.py) [gone](../../no/such.py)"
    assert rewrite(page, "tiers/bandit.md") == ("![fig](../figures/default_run.png) losses [gone](../../no/such.py)")
    assert rewrite("![fig](../figures/default_run.png)", "index.md") == "![fig](figures/default_run.png)"
    kept = "[speed](speed.md#tier-3) [paper](https://arxiv.org/abs/2404.14367)"
    assert rewrite(kept, "index.md") == kept
