"""Homework machinery: student notebooks are generated from the sources, valid, and in sync."""
from __future__ import annotations

import ast

import nbformat
import pytest

from rl4lm_book import assignments

SOURCES = assignments.sources()


def test_there_is_homework():
    assert SOURCES, "no homework sources in homework/solutions"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_student_notebook_is_in_sync_with_its_source(source):
    committed = assignments.student_path(source)
    assert committed.exists(), f"{committed.name} missing: run `make homework`"
    assert committed.read_text() == assignments.generated_student_text(source), (
        f"{committed.name} drifted from {source.name}: run `make homework` and commit the result")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_student_notebook_is_valid_python_without_solutions(source):
    nb = nbformat.read(assignments.student_path(source), as_version=4)
    nbformat.validate(nb)
    stubs = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        code = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        ast.parse(code)  # every cell parses
        assert "BEGIN SOLUTION" not in cell.source
        if "NotImplementedError" in cell.source:
            stubs += 1
            assert f'{assignments.exercise_name(cell.source)}: not implemented yet' in cell.source
    assert stubs >= 1


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_first_cell_installs_from_the_configured_repository_only_in_colab(source):
    nb = nbformat.read(assignments.student_path(source), as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert assignments.repository_url() in first.source
    assert "google.colab" in first.source and "find_spec('rl4lm') is None" in first.source
    assert "torch" not in first.source.split("pip")[1], "the Colab cell must not reinstall torch"


def test_clearing_names_the_exercise():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import rl4lm.profiles", metadata={"tags": ["colab-setup"]}),
        nbformat.v4.new_code_cell("def top_k_filter(logits, k):\n    ### BEGIN SOLUTION\n    return logits\n    ### END SOLUTION\n"),
    ])
    student = assignments.student_notebook(nb, "https://example.org/repo")
    body = student.cells[1].source
    assert "return logits" not in body
    assert 'raise NotImplementedError("top_k_filter: not implemented yet' in body
    namespace: dict = {}
    exec(body, namespace)
    with pytest.raises(NotImplementedError, match="top_k_filter"):
        namespace["top_k_filter"](None, 1)


def test_site_shows_solutions_only_with_the_instructor_switch():
    solution = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import rl4lm.profiles", metadata={"tags": ["colab-setup"]}),
        nbformat.v4.new_code_cell("def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION\n",
                                  outputs=[nbformat.v4.new_output("stream", text="16\n")]),
        nbformat.v4.new_code_cell("from tqdm.auto import tqdm", outputs=[nbformat.v4.new_output(
            "display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "x"}, "text/plain": "0%"})]),
    ])
    student = assignments.published(solution, "https://example.org/repo", solutions=False)
    shown = assignments.published(solution, "https://example.org/repo", solutions=True)
    assert "return x * x" not in student.cells[1].source and "return x * x" in shown.cells[1].source
    assert student.cells[1].outputs == solution.cells[1].outputs, "outputs of the solution run are kept"
    assert "hide-input" in student.cells[0].metadata["tags"]
    assert student.cells[2].outputs == [], "widget outputs (they need JS from a CDN) are dropped"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_unfilled_student_notebook_runs_top_to_bottom(source):
    """A student who runs the notebook before filling anything in sees 'not implemented yet', never a crash."""
    executed = assignments.execute(nbformat.read(assignments.student_path(source), as_version=4),
                                   cwd=assignments.student_path(source).parent, timeout=300)
    printed = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    stubs = sum("NotImplementedError" in c.source for c in executed.cells if c.cell_type == "code")
    assert printed.count("not implemented yet") >= stubs, printed[-2000:]
    assert "Traceback" not in printed
