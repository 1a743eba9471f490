"""MkDocs hooks (mkdocs.yml `hooks:`): the site shows the repository's own figures, the tier-1 grid table read
from the CSV its sweep wrote, and an API reference page per module found in the packages, so that none of them
is copied by hand into docs/ and none can drift from the code (a module added or moved gets its page).

A page links what lies outside docs/ as GitHub shows it, relative to the page's own file
(`../figures/default_run.png`, `../alignlab/core/losses.py`): on the site a figure is served from its place and
a link to a source file becomes its text. A link to nothing is left alone, so the strict build fails on it."""

import ast
import csv
import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File

REPO = Path(__file__).resolve().parents[1]
FIGURES = "figures"
API_PACKAGES = ["alignlab", "bandits", "synthetic_llm", "full_scale"]
API_NAV_TITLE = "API reference"
GRID_MARKER = re.compile(r"<!-- grid-table: (\S+\.csv) -->")
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^()\s#]+)(#[^()\s]*)?\)")
COLUMNS = [("hard", "online"), ("hard", "offline"), ("easy", "online"), ("easy", "offline")]
HEADERS = ["R1 online", "R1 offline", "R2 online", "R2 offline"]


def api_modules() -> dict[str, Path]:
    """Every public module of the packages, by dotted name, in file order (a package before its modules)."""
    modules = {}
    for package in API_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if not any(part.startswith("_") for part in parts):
                modules[".".join(parts)] = path
    return modules


def first_line(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text()))
    return doc.strip().split("\n\n")[0].replace("\n", " ") if doc else ""


def api_index(modules: dict[str, Path]) -> str:
    lines = [
        f"# {API_NAV_TITLE}",
        "",
        "Generated from the docstrings of every module (a page per module). Start with `alignlab.core.losses` "
        "(every loss, each with its paper's equation), `alignlab.core.train` (the loop) and `bandits.task`.",
        "",
        "| module | what it is |",
        "|---|---|",
    ]
    lines += [f"| [`{name}`]({name}.md) | {first_line(path)} |" for name, path in modules.items()]
    return "\n".join(lines) + "\n"


def on_config(config):
    """The nav's API entry lists the generated module pages, grouped by package."""
    groups: dict[str, list[str]] = {}
    for name, path in api_modules().items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        groups.setdefault(package, []).append(f"api/{name}.md")
    for entry in config["nav"] or []:
        if isinstance(entry, dict) and API_NAV_TITLE in entry:
            entry[API_NAV_TITLE] = ["api/index.md"] + [{group: pages} for group, pages in groups.items()]
    return config


def on_files(files, config):
    """Pages link figures as `figures/NAME` (from docs/) or `../figures/NAME` (from docs/tiers/)."""
    for path in sorted((REPO / FIGURES).iterdir()):
        if path.suffix in {".png", ".gif"}:
            files.append(File(f"{FIGURES}/{path.name}", str(REPO), config["site_dir"], config["use_directory_urls"]))
    modules = api_modules()
    files.append(File.generated(config, "api/index.md", content=api_index(modules)))
    for name in modules:
        files.append(File.generated(config, f"api/{name}.md", content=f"# `{name}`\n\n::: {name}\n"))
    return files


def grid_table(csv_path: Path) -> str:
    """One row per objective: final expected reward, mean ± s.d. over the seeds, per reward and regime, from the
    `final.csv` that `alignlab-plot multirun/tajwar_bandit_grid` writes (three header rows, then one per job)."""
    with csv_path.open() as f:
        rows = list(csv.reader(f))
    names, stats = rows[0], rows[1]
    mean = next(i for i, (n, s) in enumerate(zip(names, stats, strict=True)) if n == "eval/reward" and s == "mean")
    cells: dict[str, dict[tuple[str, str], str]] = {}
    for row in rows[3:]:
        label = dict(part.split("=", 1) for part in row[0].split(", "))
        key = (label["task.reward"], label["sampling"])
        cells.setdefault(label["algo"], {})[key] = f"{float(row[mean]):.3f} ± {float(row[mean + 1]):.3f}"
    lines = ["| algo | " + " | ".join(HEADERS) + " |", "|---|" + "---:|" * len(HEADERS)]
    for algo in sorted(cells):
        lines.append(f"| `{algo}` | " + " | ".join(cells[algo][key] for key in COLUMNS) + " |")
    return "\n".join(lines)


def repository_links(markdown: str, src_uri: str) -> str:
    """Links from the page `docs/<src_uri>` to files of the repository outside docs/, made to work on the site."""
    page_dir = posixpath.dirname(src_uri)

    def rewrite(match: re.Match) -> str:
        bang, text, target, anchor = match.groups()
        if re.match(r"[a-z][a-z0-9+.-]*:", target):
            return match.group(0)  # a URL
        in_repo = posixpath.normpath(posixpath.join("docs", page_dir, target))
        if in_repo.startswith("docs/") or in_repo.startswith("..") or not (REPO / in_repo).exists():
            return match.group(0)
        if in_repo.startswith(f"{FIGURES}/"):  # served by on_files as if it were docs/figures/
            return f"{bang}[{text}]({posixpath.relpath(in_repo, page_dir or '.')}{anchor or ''})"
        return text if not bang else match.group(0)

    return LINK.sub(rewrite, markdown)


def on_page_markdown(markdown, page, config, files):
    markdown = GRID_MARKER.sub(lambda m: grid_table(REPO / m.group(1)), markdown)
    return repository_links(markdown, page.file.src_uri)
