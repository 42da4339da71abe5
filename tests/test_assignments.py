"""Homework machinery: student notebooks are generated from the sources, valid, and in sync."""
from __future__ import annotations

import ast
import re

import nbformat
import pytest

from helpers import HOMEWORK_SOURCE
from rl4lm_book import assignments
from rl4lm_book.book import ROOT, BookError, release_tag

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


def test_student_page_labels_check_lines_as_the_reference_solutions_and_shows_model_answers_only_to_instructors():
    """Under a stub, '✅ ... all checks passed' would read as the student's result: the page says it is the reference's."""
    passed = "\u2705 square: all checks passed (2 cases).\n"
    solution = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import rl4lm.profiles", metadata={"tags": ["colab-setup"]}),
        nbformat.v4.new_code_cell("def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION\n"),
        nbformat.v4.new_code_cell("checks.square(square);", outputs=[nbformat.v4.new_output("stream", text="loading\n" + passed)]),
        nbformat.v4.new_markdown_cell("**Your answer.**\n\n### BEGIN SOLUTION\nSquaring doubles the exponent.\n### END SOLUTION"),
    ])
    student = assignments.published(solution, "https://example.org/repo", solutions=False)
    assert student.cells[2].outputs[0]["text"] == "loading\nreference solution: " + passed
    assert solution.cells[2].outputs[0]["text"] == "loading\n" + passed, "the executed solution is not modified"
    assert student.cells[3].source == "**Your answer.**\n\nYOUR ANSWER HERE"
    shown = assignments.published(solution, "https://example.org/repo", solutions=True)
    assert shown.cells[2].outputs[0]["text"] == "loading\nreference solution: " + passed, "the same page text in both versions"
    answer = shown.cells[3].source
    assert "SOLUTION" not in answer and "Squaring doubles the exponent." in answer
    assert answer.startswith("**Your answer.**\n\n:::{admonition} Model answer\n") and answer.endswith("\n:::")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_unfilled_student_notebook_runs_top_to_bottom(source):
    """A student who runs the notebook before filling anything in sees 'not implemented yet', never a crash."""
    executed = assignments.execute(nbformat.read(assignments.student_path(source), as_version=4),
                                   cwd=assignments.student_path(source).parent, timeout=300)
    printed = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    stubs = sum("NotImplementedError" in c.source for c in executed.cells if c.cell_type == "code")
    assert printed.count("not implemented yet") >= stubs, printed[-2000:]
    assert "Traceback" not in printed


# --- malformed sources are refused in one sentence (nbgrader would leave the solution in the student notebook) ---

SOURCE = HOMEWORK_SOURCE
BEGIN_LINE = SOURCE.splitlines().index("    ### BEGIN SOLUTION") + 1
END_LINE = BEGIN_LINE + 2


def homework_book(folder, source_text=SOURCE):
    """A minimal book folder with one homework source; returns the source path."""
    (folder / "_config.yml").write_text("repository:\n  url: https://github.com/example/throwaway\n")
    source = folder / "homework" / "solutions" / "hw.md"
    source.parent.mkdir(parents=True)
    source.write_text(source_text)
    return source


MALFORMED = {
    "wrong case": ("### BEGIN SOLUTION", "### Begin Solution", BEGIN_LINE, "'### Begin Solution' is not a solution marker"),
    "two hashes": ("### BEGIN SOLUTION", "## BEGIN SOLUTION", BEGIN_LINE, "'## BEGIN SOLUTION' is not a solution marker"),
    "text after the marker": ("### END SOLUTION", "### END SOLUTION here", END_LINE, "'### END SOLUTION here' is not a solution marker"),
    "END before BEGIN": ("    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION",
                         "    ### END SOLUTION\n    return x * x\n    ### BEGIN SOLUTION", BEGIN_LINE,
                         "'### END SOLUTION' comes without a '### BEGIN SOLUTION' before it"),
    "BEGIN without END": ("    ### END SOLUTION\n", "", BEGIN_LINE, "'### BEGIN SOLUTION' has no '### END SOLUTION' after it"),
    "nested BEGIN": ("    return x * x\n", "    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION\n", BEGIN_LINE + 1,
                     "regions cannot be nested"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=str)
def test_malformed_solution_markers_are_refused_in_one_sentence_naming_file_line_and_cell(tmp_path, case):
    old, new, line, problem = MALFORMED[case]
    source = homework_book(tmp_path, SOURCE.replace(old, new, 1))
    with pytest.raises(assignments.HomeworkError) as caught:
        assignments.generated_student_text(source)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{source}, line {line}, cell 2 (square): "), message
    assert problem in message
    assert caught.value._render_traceback_() == [f"HomeworkError: {message}"]


def test_the_command_line_refuses_a_malformed_source_with_one_line_and_writes_nothing(tmp_path):
    import subprocess
    import sys

    source = homework_book(tmp_path, SOURCE.replace("### BEGIN SOLUTION", "### Begin Solution"))
    for command in ("generate", "check"):
        result = subprocess.run([sys.executable, "-m", "rl4lm_book.assignments", command, str(tmp_path)], capture_output=True, text=True)
        assert result.returncode == 1, result
        assert result.stdout == "" and result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(f"HomeworkError: {source}, line {BEGIN_LINE}, cell 2 (square): '### Begin Solution'")
    assert not assignments.student_path(source).exists()


@pytest.mark.parametrize("case", ["unreadable", "no set-up cell"])
def test_an_unreadable_source_or_one_without_the_setup_cell_is_one_sentence_naming_the_file(tmp_path, case):
    text = SOURCE.replace(":tags: [colab-setup]", ":tags: [colab-setup" if case == "unreadable" else ":tags: [other]")
    source = homework_book(tmp_path, text)
    with pytest.raises(assignments.HomeworkError) as caught:
        assignments.generated_student_text(source)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{source}: ")
    assert ("jupytext cannot read it" if case == "unreadable" else "no code cell is tagged 'colab-setup'") in message


def test_solution_regions_are_counted_against_the_stubs_of_the_student_notebook(tmp_path, monkeypatch):
    """If the clearing ever leaves a region in place (e.g. nbgrader's delimiters change), the student notebook is refused."""
    from nbgrader.preprocessors import ClearSolutions

    source = homework_book(tmp_path)
    monkeypatch.setattr(ClearSolutions, "_replace_solution_region", lambda self, cell, language: False)
    with pytest.raises(assignments.HomeworkError, match=r"cell 2 \(square\): 1 solution region\(s\) became 0 stub\(s\)"):
        assignments.generated_student_text(source)


# --- the Colab cell installs the release of the course package, not a moving branch ---

def test_release_tag_is_the_version_of_the_course_package_and_pyproject_agrees():
    import tomllib

    import rl4lm

    assert release_tag() == f"v{rl4lm.__version__}"
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"] == rl4lm.__version__


def test_a_half_bumped_version_is_refused_in_one_sentence(tmp_path):
    (tmp_path / "code" / "rl4lm").mkdir(parents=True)
    (tmp_path / "code" / "rl4lm" / "__init__.py").write_text('"""Doc."""\n__version__ = "0.3.0"\n')
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "rl4lm"\nversion = "0.2.0"\n')
    with pytest.raises(BookError, match=r"pyproject.toml says version 0.2.0 but code/rl4lm/__init__.py says 0.3.0"):
        release_tag(tmp_path)


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_committed_notebook_installs_exactly_the_release_tag_of_the_current_version(source):
    """A version bump without `make homework` fails here: the notebooks would install the previous release."""
    nb = nbformat.read(assignments.student_path(source), as_version=4)
    setup = next(c for c in nb.cells if c.cell_type == "code")
    installs = re.findall(r"'rl4lm @ git\+([^'@]+)@([^']+)'", setup.source)
    assert installs == [(assignments.repository_url(), release_tag())], (
        f"{assignments.student_path(source).name} installs {installs}: run `make homework` and commit the result")


def test_committed_notebook_shows_glued_numbers_by_name_for_colab():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "from {glue:text}`hw1_em_before:.0%` to {glue:text}`hw1_em_after` and {cite}`vaswani2017attention`")])
    text = assignments.without_glue_roles(nb).cells[0].source
    assert text == "from `hw1_em_before` to `hw1_em_after` and {cite}`vaswani2017attention`"
    for source in SOURCES:
        committed = assignments.student_path(source).read_text()
        assert "{glue:" not in committed, f"{source.name}: Colab would show a raw glue role"
