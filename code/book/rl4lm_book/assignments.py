"""Homework notebooks: solution sources -> student notebooks, and executed solutions for the site.

Sources live in ``homework/solutions/<name>.md`` (MyST text notebooks). Each exercise's answer
sits between ``### BEGIN SOLUTION`` and ``### END SOLUTION``. The student notebook
``homework/<name>.ipynb`` is generated from it with nbgrader's ``ClearSolutions`` preprocessor
(the de-facto standard for solution clearing), configured so that an unfilled exercise raises
``NotImplementedError("<exercise>: ...")``. The first cell tagged ``colab-setup`` is rewritten
with the repository URL from ``_config.yml``.

Command line::

    python -m rl4lm_book.assignments generate   # rewrite homework/*.ipynb from the sources
    python -m rl4lm_book.assignments check      # exit 1 if a committed student notebook drifted
"""
from __future__ import annotations

import copy
import hashlib
import re
import sys
from pathlib import Path

import nbformat

from .book import ROOT, repository_url

SETUP_TAG = "colab-setup"
DEF_PATTERN = re.compile(r"^\s*def\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE)


def colab_setup_source(url: str) -> str:
    """The first code cell of every notebook: install the course package in Colab only, once."""
    return (
        "# Set-up: in Google Colab, install the course package (pinned, once; Colab's torch is kept).\n"
        "# Elsewhere this cell does nothing: install locally with `make book` (see the README).\n"
        "import importlib.util, subprocess, sys\n"
        "if 'google.colab' in sys.modules and importlib.util.find_spec('rl4lm') is None:\n"
        f"    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', 'rl4lm @ git+{url}@main'], check=True)\n"
        "import rl4lm.profiles\n"
        "rl4lm.profiles.describe_profile()"
    )


def read_source(path: Path) -> nbformat.NotebookNode:
    """Read a MyST text notebook (or .ipynb) as a notebook."""
    import jupytext

    nb = jupytext.read(path)
    nb.metadata.pop("jupytext", None)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def exercise_name(source: str) -> str:
    """Name of the first function defined in a cell (the exercise), or 'this exercise'."""
    match = DEF_PATTERN.search(source)
    return match.group(1) if match else "this exercise"


def _set_setup_cell(nb: nbformat.NotebookNode, url: str) -> None:
    """Rewrite the cell tagged ``colab-setup`` with the canonical set-up code."""
    for cell in nb.cells:
        if cell.cell_type == "code" and SETUP_TAG in cell.metadata.get("tags", []):
            cell.source = colab_setup_source(url)
            return
    raise ValueError(f"no code cell tagged '{SETUP_TAG}': every homework starts with the Colab set-up cell")


def student_notebook(solution: nbformat.NotebookNode, url: str) -> nbformat.NotebookNode:
    """Clear every solution region with nbgrader's ClearSolutions; keep outputs as given."""
    from nbgrader.preprocessors import ClearSolutions

    nb = copy.deepcopy(solution)
    _set_setup_cell(nb, url)
    resources = {"language": "python"}
    for index, cell in enumerate(nb.cells):
        name = exercise_name(cell.source) if cell.cell_type == "code" else ""
        stub = f'raise NotImplementedError("{name}: not implemented yet - replace this line with your code")'
        clear = ClearSolutions(code_stub={"python": stub}, text_stub="YOUR ANSWER HERE", enforce_metadata=False)
        nb.cells[index], resources = clear.preprocess_cell(cell, resources, index)
    return nb


def without_outputs(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy without outputs, execution counts or cell ids that vary (what is committed)."""
    nb = copy.deepcopy(nb)
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{index}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)
    return nb


def student_path(source: Path) -> Path:
    """Where the student notebook of a source lives: homework/<name>.ipynb beside homework/solutions/."""
    return source.parent.parent / f"{source.stem}.ipynb"


def sources(root: Path = ROOT) -> list[Path]:
    """All homework sources of the book at ``root``."""
    return sorted((root / "homework" / "solutions").glob("*.md"))


def render(nb: nbformat.NotebookNode) -> str:
    """Serialise a notebook exactly as it is committed."""
    return nbformat.writes(nb, version=4) + "\n"


def generated_student_text(source: Path) -> str:
    """The committed text of the student notebook generated from ``source``."""
    return render(without_outputs(student_notebook(read_source(source), repository_url())))


def generate() -> list[Path]:
    """Write every student notebook from its source."""
    written = []
    for source in sources():
        target = student_path(source)
        target.write_text(generated_student_text(source))
        written.append(target)
    return written


def drifted() -> list[Path]:
    """Student notebooks that differ from what their source generates."""
    return [student_path(s) for s in sources()
            if not student_path(s).exists() or student_path(s).read_text() != generated_student_text(s)]


def execute(nb: nbformat.NotebookNode, cwd: Path, timeout: int = 900) -> nbformat.NotebookNode:
    """Execute a notebook top to bottom with nbclient; a cell that raises raises here."""
    from nbclient import NotebookClient

    nb = copy.deepcopy(nb)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def published(solution_executed: nbformat.NotebookNode, url: str, solutions: bool) -> nbformat.NotebookNode:
    """The page shown on the site: student code (or solutions) with the outputs of the solution run.

    The set-up cell's code is folded away on the site (tag ``hide-input``); Colab shows it as usual.
    """
    if solutions:
        nb = copy.deepcopy(solution_executed)
        _set_setup_cell(nb, url)
    else:
        nb = student_notebook(solution_executed, url)
    for cell in nb.cells:
        if SETUP_TAG in cell.metadata.get("tags", []):
            cell.metadata["tags"] = [*cell.metadata["tags"], "hide-input"]
    return without_widgets(nb)


def without_widgets(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop Jupyter-widget outputs (tqdm bars): on a static page they would load JS from a CDN and show 0%."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if "outputs" in cell:
            cell.outputs = [o for o in cell.outputs if "application/vnd.jupyter.widget-view+json" not in o.get("data", {})]
    return nb


def content_hash(source: Path) -> str:
    """Hash of a source and of the rl4lm package: the cache key of an executed solution."""
    import rl4lm

    digest = hashlib.sha256(source.read_bytes())
    package = Path(rl4lm.__file__).parent
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def main(argv: list[str]) -> int:
    """Command line: ``generate`` or ``check``."""
    command = argv[1] if len(argv) > 1 else "check"
    if command == "generate":
        for path in generate():
            print(f"wrote {path.relative_to(ROOT)}")
        return 0
    if command == "check":
        stale = drifted()
        for path in stale:
            print(f"{path.relative_to(ROOT)} is out of date: run `python -m rl4lm_book.assignments generate`")
        return 1 if stale else 0
    print("usage: python -m rl4lm_book.assignments [generate|check]")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
