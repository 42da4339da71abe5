"""Homework notebooks: solution sources -> student notebooks, and executed solutions for the site.

Sources live in ``homework/solutions/<name>.md`` (MyST text notebooks). Each exercise's answer
sits between the lines ``### BEGIN SOLUTION`` and ``### END SOLUTION``, written exactly so. The
student notebook ``homework/<name>.ipynb`` is generated from it with nbgrader's ``ClearSolutions``
preprocessor (the de-facto standard for solution clearing), configured so that an unfilled exercise
raises ``NotImplementedError("<exercise>: ...")``. The first cell tagged ``colab-setup`` is rewritten
with the repository URL from ``_config.yml`` and the release tag ``v<rl4lm.__version__>``.

nbgrader looks for the substring ``BEGIN SOLUTION`` and forgives an ``END`` before its ``BEGIN``, so a
typo (``### Begin Solution``) would leave the solution in the student notebook. Markers are therefore
checked first: a malformed source is refused with one sentence (:class:`HomeworkError`) naming the
file, the line and the cell (its index in the notebook, counting from 0, and the exercise), and the
stubs in the student notebook are counted against the solution regions.

Command line (a malformed source: one line on stderr, exit status 1, nothing written)::

    python -m rl4lm_book.assignments generate [BOOK_DIR]  # rewrite homework/*.ipynb from the sources
    python -m rl4lm_book.assignments check [BOOK_DIR]     # exit 1 if a committed student notebook drifted
"""
from __future__ import annotations

import copy
import hashlib
import re
import sys
from pathlib import Path

import nbformat

from .book import ROOT, BookError, release_tag, repository_url

SETUP_TAG = "colab-setup"
DEF_PATTERN = re.compile(r"^\s*def\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE)
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
MARKER = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$")
# what an author meant as a marker (any case, any number of #); nbgrader itself takes any line containing "BEGIN SOLUTION"
MARKER_LIKE = re.compile(r"^\s*#+\s*(begin|end)[\s_-]*solutions?\b", re.IGNORECASE)
STUB_TEXT = "not implemented yet - replace this line with your code"
TEXT_STUB = "YOUR ANSWER HERE"


class HomeworkError(BookError):
    """A homework source that cannot be turned into a student notebook, in one sentence naming the file and cell."""

    def __init__(self, message: str, source: Path | None = None, line: int | None = None, cell_index: int | None = None):
        super().__init__(message)
        self.source, self.line, self.cell_index = source, line, cell_index


def display_path(path: Path | None) -> str:
    """A path as shown in messages: relative to the repository (or the current folder) when inside it."""
    if path is None:
        return "the homework source"
    path = Path(path).absolute()
    for base in (ROOT, Path.cwd()):
        if path.is_relative_to(base):
            return str(path.relative_to(base))
    return str(path)


def colab_setup_source(url: str, ref: str) -> str:
    """The first code cell of every notebook: install the course package at release ``ref``, in Colab only, once."""
    return (
        f"# Set-up: in Google Colab, install the course package (release {ref}, once; Colab's torch is kept).\n"
        "# Elsewhere this cell does nothing: install locally with `make book` (see the README).\n"
        "import importlib.util, subprocess, sys\n"
        "if 'google.colab' in sys.modules and importlib.util.find_spec('rl4lm') is None:\n"
        f"    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', 'rl4lm @ git+{url}@{ref}'], check=True)\n"
        "import rl4lm.profiles\n"
        "rl4lm.profiles.describe_profile()"
    )


def read_source(path: Path) -> nbformat.NotebookNode:
    """Read a MyST text notebook (or .ipynb) as a notebook; one sentence naming the file if jupytext cannot."""
    import jupytext

    try:
        nb = jupytext.read(path)
    except Exception as error:  # YAML, encoding, missing file...: say which file, not a traceback
        first_line = (str(error).strip().splitlines() or [""])[0]
        raise HomeworkError(f"{display_path(path)}: jupytext cannot read it as a notebook ({type(error).__name__}: {first_line})",
                            source=Path(path)) from None
    nb.metadata.pop("jupytext", None)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def exercise_name(source: str) -> str:
    """Name of the first function defined in a cell (the exercise), or 'this exercise'."""
    match = DEF_PATTERN.search(source)
    return match.group(1) if match else "this exercise"


def cell_lines(source: Path | None, nb: nbformat.NotebookNode) -> list[int | None]:
    """Line (from 1) in the text file ``source`` where each cell's text starts; None where it cannot be found."""
    if source is None or Path(source).suffix == ".ipynb" or not Path(source).is_file():
        return [None] * len(nb.cells)
    text, position, lines = Path(source).read_text(), 0, []
    for cell in nb.cells:
        start = text.find(cell.source, position) if cell.source.strip() else -1
        if start < 0:
            lines.append(None)
        else:
            lines.append(text.count("\n", 0, start) + 1)
            position = start + len(cell.source)
    return lines


def describe_cell(nb: nbformat.NotebookNode, index: int) -> str:
    """'cell 7 (causal_self_attention)': the index in the notebook (from 0) and the exercise it defines, if any."""
    cell = nb.cells[index]
    if cell.cell_type != "code":
        return f"cell {index} (markdown)"
    name = DEF_PATTERN.search(cell.source)
    return f"cell {index} ({name.group(1)})" if name else f"cell {index}"


def _cell_error(problem: str, nb: nbformat.NotebookNode, index: int, source: Path | None, offset: int = 0) -> HomeworkError:
    """One sentence: '<file>, line N, cell I (exercise): <problem>'."""
    start = cell_lines(source, nb)[index]
    line = None if start is None else start + offset
    where = display_path(source) + (f", line {line}" if line else "")
    return HomeworkError(f"{where}, {describe_cell(nb, index)}: {problem}", source=source, line=line or start, cell_index=index)


def solution_regions(nb: nbformat.NotebookNode, source: Path | None = None) -> list[int]:
    """Number of ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` regions in each cell.

    Refuses (:class:`HomeworkError`) a marker written otherwise (case, number of ``#``, text around it), an END
    before its BEGIN, a BEGIN without END and a BEGIN inside a region: nbgrader would leave the solution in place.
    """
    counts = []
    for index, cell in enumerate(nb.cells):
        regions, opened = 0, None
        for offset, text in enumerate(cell.source.split("\n")):
            marker = MARKER.match(text)
            if marker is None and (("BEGIN SOLUTION" in text or "END SOLUTION" in text) or MARKER_LIKE.search(text)):
                raise _cell_error(f"'{text.strip()}' is not a solution marker: write '{BEGIN}' and '{END}' exactly so, "
                                  "each on a line of its own", nb, index, source, offset)
            if marker is None:
                continue
            if marker.group(1) == "BEGIN":
                if opened is not None:
                    raise _cell_error(f"a second '{BEGIN}' comes before the '{END}' of the region opened {offset - opened} "
                                      "lines above (regions cannot be nested)", nb, index, source, offset)
                opened = offset
            else:
                if opened is None:
                    raise _cell_error(f"'{END}' comes without a '{BEGIN}' before it", nb, index, source, offset)
                opened, regions = None, regions + 1
        if opened is not None:
            raise _cell_error(f"'{BEGIN}' has no '{END}' after it in this cell", nb, index, source, opened)
        counts.append(regions)
    return counts


def _set_setup_cell(nb: nbformat.NotebookNode, url: str, ref: str, source: Path | None = None) -> None:
    """Rewrite the cell tagged ``colab-setup`` with the canonical set-up code."""
    for cell in nb.cells:
        if cell.cell_type == "code" and SETUP_TAG in cell.metadata.get("tags", []):
            cell.source = colab_setup_source(url, ref)
            return
    raise HomeworkError(f"{display_path(source)}: no code cell is tagged '{SETUP_TAG}': every homework starts with the Colab "
                        f"set-up cell (a code cell with `:tags: [{SETUP_TAG}]`)", source=source)


def _check_stubs(solution: nbformat.NotebookNode, student: nbformat.NotebookNode, regions: list[int], source: Path | None) -> None:
    """Each solution region became exactly one stub in the student notebook, and no marker is left."""
    if len(solution.cells) != len(student.cells):
        raise HomeworkError(f"{display_path(source)}: the student notebook has {len(student.cells)} cells but the source "
                            f"{len(solution.cells)}", source=source)
    for index, (before, after, expected) in enumerate(zip(solution.cells, student.cells, regions)):
        stub = STUB_TEXT if before.cell_type == "code" else TEXT_STUB
        made = after.source.count(stub) - before.source.count(stub)
        if made != expected or "BEGIN SOLUTION" in after.source or "END SOLUTION" in after.source:
            raise _cell_error(f"{expected} solution region(s) became {made} stub(s) in the student notebook: "
                              "check the markers of this cell", solution, index, source)


def student_notebook(solution: nbformat.NotebookNode, url: str, ref: str | None = None,
                     source: Path | None = None) -> nbformat.NotebookNode:
    """Clear every solution region with nbgrader's ClearSolutions; keep outputs as given.

    ``ref`` is the git revision the Colab cell installs (default: the release tag of the course package);
    ``source`` (the file the notebook came from) is only named in errors.
    """
    from nbgrader.preprocessors import ClearSolutions

    regions = solution_regions(solution, source)
    nb = copy.deepcopy(solution)
    _set_setup_cell(nb, url, ref or release_tag(), source)
    resources = {"language": "python"}
    for index, cell in enumerate(nb.cells):
        name = exercise_name(cell.source) if cell.cell_type == "code" else ""
        stub = f'raise NotImplementedError("{name}: {STUB_TEXT}")'
        clear = ClearSolutions(code_stub={"python": stub}, text_stub=TEXT_STUB, enforce_metadata=False)
        nb.cells[index], resources = clear.preprocess_cell(cell, resources, index)
    _check_stubs(solution, nb, regions, source)
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


def outputs_before(nb: nbformat.NotebookNode, index: int) -> nbformat.NotebookNode:
    """A copy that keeps the outputs of the cells before ``index`` only (a run that failed at cell ``index``).

    The failing cell's traceback is not kept: it would print lines of the solution on the student page.
    """
    nb = copy.deepcopy(nb)
    for cell in nb.cells[index:]:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
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


def book_of(source: Path) -> Path:
    """The book folder of a homework source (``<book>/homework/solutions/<name>.md``)."""
    return Path(source).absolute().parents[2]


GLUE_ROLE = re.compile(r"\{glue:text\}`(\w+)(?::[^`]*)?`")


def without_glue_roles(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Markdown for Colab and Jupyter, which know no myst-nb roles: a glued number shows as its `name`.

    The experiment cells print ``name = value`` for each (``rl4lm.plots.quote``); the website pastes the values instead.
    """
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = GLUE_ROLE.sub(r"`\1`", cell.source)
    return nb


def generated_student_text(source: Path) -> str:
    """The committed text of the student notebook generated from ``source`` (HomeworkError if the source is malformed)."""
    book = book_of(source)
    student = student_notebook(read_source(source), repository_url(book), release_tag(book), source=source)
    return render(without_outputs(without_glue_roles(student)))


def generate(root: Path = ROOT) -> list[Path]:
    """Write every student notebook from its source; nothing is written if any source is malformed."""
    texts = {student_path(source): generated_student_text(source) for source in sources(root)}
    for target, text in texts.items():
        target.write_text(text)
    return list(texts)


def drifted(root: Path = ROOT) -> list[Path]:
    """Student notebooks that differ from what their source generates (every source is checked, HomeworkError if malformed)."""
    texts = {student_path(source): generated_student_text(source) for source in sources(root)}
    return [target for target, text in texts.items() if not target.exists() or target.read_text() != text]


def execute(nb: nbformat.NotebookNode, cwd: Path, timeout: int = 900) -> nbformat.NotebookNode:
    """Execute a notebook top to bottom with nbclient; a cell that raises raises here."""
    from nbclient import NotebookClient

    nb = copy.deepcopy(nb)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def run_solution(source: Path, timeout: int = 900) -> tuple[nbformat.NotebookNode, HomeworkError | None]:
    """Execute a homework source top to bottom; return the notebook and, if a cell failed, one sentence about it.

    On failure the notebook holds the outputs up to the failing cell (its ``cell_index`` is on the error).
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = read_source(source)
    current: list[int] = []
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(source.parent.parent)}},
                            on_cell_start=lambda cell, cell_index: current.append(cell_index))
    try:
        client.execute()
    except Exception as error:  # a cell raised, timed out, or the kernel died or did not start
        if isinstance(error, CellExecutionError):
            what = f"{error.ename}: {error.evalue}"
        else:
            what = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"
        if not current:
            return nb, HomeworkError(f"{display_path(source)}: the solution run failed before its first cell ({what})", source=source)
        return nb, _cell_error(f"the solution run failed with {what}", nb, current[-1], source)
    return nb, None


CHECK_PASSED = "\u2705"  # how a checker's success line starts (rl4lm.checks)
REFERENCE_LABEL = "reference solution: "
MODEL_ANSWER_OPEN, MODEL_ANSWER_CLOSE = ":::{admonition} Model answer\n:class: tip", ":::"


def label_reference_outputs(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Prefix each check line of the solution run with 'reference solution: ' (in place).

    On the student page a check's ✅ sits under a stub the student has not filled yet; the label says whose run it is.
    """
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                text = "".join(output.get("text", ""))
                output["text"] = re.sub(f"^(?={CHECK_PASSED})", REFERENCE_LABEL, text, flags=re.MULTILINE)
    return nb


def model_answer_boxes(text: str) -> str:
    """A markdown cell's written-answer region as a 'Model answer' admonition instead of its marker lines (headings in MyST)."""
    lines = []
    for line in text.split("\n"):
        marker = MARKER.match(line)
        lines.append(line if marker is None else MODEL_ANSWER_OPEN if marker.group(1) == "BEGIN" else MODEL_ANSWER_CLOSE)
    return "\n".join(lines)


def published(solution_executed: nbformat.NotebookNode, url: str, solutions: bool, ref: str | None = None,
              source: Path | None = None) -> nbformat.NotebookNode:
    """The page shown on the site: student code (or solutions) with the outputs of the solution run.

    The set-up cell's code is folded away on the site (tag ``hide-input``); Colab shows it as usual. Each check line
    of the solution run reads "reference solution: ✅ ...": on the student page the code above it is a stub. With
    solutions shown, a written answer (markdown between the solution markers) becomes a "Model answer" box.
    """
    if solutions:
        solution_regions(solution_executed, source)
        nb = copy.deepcopy(solution_executed)
        _set_setup_cell(nb, url, ref or release_tag(), source)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = model_answer_boxes(cell.source)
    else:
        nb = student_notebook(solution_executed, url, ref, source)
    label_reference_outputs(nb)
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
    """Command line: ``generate|check [BOOK_DIR]``; a malformed source is one line on stderr and exit status 1."""
    command = argv[1] if len(argv) > 1 else "check"
    root = Path(argv[2]) if len(argv) > 2 else ROOT
    try:
        if command == "generate":
            for path in generate(root):
                print(f"wrote {display_path(path)}")
            return 0
        if command == "check":
            stale = drifted(root)
            for path in stale:
                print(f"{display_path(path)} is out of date: run `python -m rl4lm_book.assignments generate`")
            return 1 if stale else 0
    except BookError as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print("usage: python -m rl4lm_book.assignments [generate|check] [BOOK_DIR]")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
