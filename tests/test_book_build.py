"""``rl4lm_book.build`` on a throw-away book: a failure is reported, marked, not cached, and fails again until fixed.

The book (a few pages, seconds per build) uses the real Sphinx extension: an intro page linking every other
page, a good executed page, a page whose code cell raises, and a homework whose solution raises.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import HOMEWORK_SOURCE, MYST_HEADER
from rl4lm_book import assignments
from rl4lm_book.build import FAILED_FILE, build

HEADER = MYST_HEADER
CONFIG = """\
title: Throw-away book
author: tests
only_build_toc_files: true
exclude_patterns: [_build, "homework/solutions/*"]
execute:
  execute_notebooks: cache
  timeout: 120
  allow_errors: false
  exclude_patterns: ["homework/*.ipynb"]
repository:
  url: https://github.com/example/throwaway
  branch: main
sphinx:
  extra_extensions: [rl4lm_book.sphinx_ext]
  config:
    mathjax_path: mathjax/tex-svg-full.js
"""
TOC = """\
format: jb-book
root: intro
chapters:
  - file: good
  - file: bad
  - file: homework/hw
  - file: homework/typo
"""
INTRO = """\
# Intro

Pages: {doc}`good`, {doc}`bad` and the homework, {ref}`hw-label`.
"""
GOOD = HEADER + """\
# Good page

```{code-cell} ipython3
print("good page ran")
```
"""
BAD = HEADER + """\
# Bad page

```{code-cell} ipython3
x = 1
```

```{code-cell} ipython3
x / 0
```
"""
HOMEWORK = HOMEWORK_SOURCE.replace("# Homework", "(hw-label)=\n# Homework", 1) + """

```{code-cell} ipython3
print("square works:", square(3) == 9)
```

```{code-cell} ipython3
square(3) / BROKEN
```
"""
TYPO = HOMEWORK.replace("(hw-label)=\n", "").replace("square(3) / BROKEN", "square(2)")  # its markers get a typo after `generate`
FILES = {"_config.yml": CONFIG, "_toc.yml": TOC, "intro.md": INTRO, "good.md": GOOD, "bad.md": BAD, "homework/solutions/hw.md": HOMEWORK,
         "homework/solutions/typo.md": TYPO}


def write_book(folder: Path) -> Path:
    """Write the throw-away book and its student notebook into ``folder``."""
    for name, text in FILES.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assignments.generate(folder)
    return folder


def cached_notebooks(out: Path) -> set[str]:
    """Names of the pages whose executed notebook is in myst-nb's cache (jupyter-cache) of a build."""
    from jupyter_cache import get_cache

    return {Path(record.uri).name for record in get_cache(out / "_build" / ".jupyter_cache").list_cache_records()}


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """Three builds of the throw-away book: failing, failing again unchanged, and after both errors are fixed."""
    book = write_book(tmp_path_factory.mktemp("book"))
    typo = book / "homework" / "solutions" / "typo.md"
    typo.write_text(TYPO.replace("### BEGIN SOLUTION", "### Begin Solution"))
    out = tmp_path_factory.mktemp("out")  # outside the book: Sphinx would read the notebooks of the execution cache
    env = dict(os.environ, RL4LM_PROFILE="tiny", HF_HUB_OFFLINE="1")
    first = build(book, path_output=out, log=book / "first.log", echo=False, env=env)
    html_after_first = {p: (first.html / f"{p}.html").read_text() for p in ("intro", "good", "bad", "homework/hw", "homework/typo")}
    html_after_first[FAILED_FILE] = (first.html / FAILED_FILE).read_text()
    second = build(book, path_output=out, log=book / "second.log", echo=False, env=env)
    cached_after_second = cached_notebooks(out), sorted(p.name for p in (out / "_build" / "rl4lm-homework").glob("*.ipynb"))
    (book / "bad.md").write_text((book / "bad.md").read_text().replace("x / 0", "x / 1"))
    hw = book / "homework" / "solutions" / "hw.md"
    hw.write_text(hw.read_text().replace("square(3) / BROKEN", "square(3) / 1"))
    typo.write_text(TYPO)
    third = build(book, path_output=out, log=book / "third.log", echo=False, env=env)
    return {"book": book, "out": out, "first": first, "second": second, "third": third, "html_after_first": html_after_first,
            "cached_after_second": cached_after_second}


def test_a_failed_build_exits_non_zero_and_names_the_failing_pages_and_cells(builds):
    first = builds["first"]
    assert not first.ok
    assert sorted(first.failed_pages) == ["bad", "homework/hw", "homework/typo"]
    summary = first.summary()
    assert "page bad:" in summary and "page homework/hw:" in summary, summary
    assert "cell 2 `x / 0` raised ZeroDivisionError: division by zero" in summary, summary
    assert "cell 4: the solution run failed with NameError" in summary, summary


def test_a_homework_solution_error_is_one_warning_naming_source_cell_and_error(builds):
    """Before: execute_solutions raised in builder-inited and no page of the book was built."""
    log = (builds["book"] / "first.log").read_text()
    warnings = [line for line in log.splitlines() if "WARNING" in line and "hw.md" in line]
    assert len(warnings) == 1, warnings
    line = HOMEWORK.splitlines().index("square(3) / BROKEN") + 1
    assert f"homework/solutions/hw.md:{line}: WARNING: homework/solutions/hw.md, line {line}, cell 4: " in warnings[0], warnings[0]
    assert "cell 4: the solution run failed with NameError: name 'BROKEN' is not defined" in warnings[0]
    assert "Extension error" not in log and "Traceback (most recent call last)" not in log


def test_a_malformed_homework_source_is_one_warning_and_its_page_is_the_committed_student_notebook(builds):
    log = (builds["book"] / "first.log").read_text()
    warnings = [line for line in log.splitlines() if "WARNING" in line and "typo.md" in line]
    assert len(warnings) == 1, warnings
    line = TYPO.splitlines().index("    ### BEGIN SOLUTION") + 1
    assert f"typo.md:{line}: WARNING: homework/solutions/typo.md, line {line}, cell 2 (square): '### Begin Solution' is not a solution marker" \
        in warnings[0], warnings[0]
    page = builds["html_after_first"]["homework/typo"]
    assert "not implemented yet" in page and "return x * x" not in page, "the committed student notebook, no solution"


def test_the_good_pages_are_built_and_every_link_resolves(builds):
    pages = builds["html_after_first"]
    assert "good page ran" in pages["good"]
    assert "rl4lm-build-failed" not in pages["good"] and "rl4lm-build-failed" not in pages["intro"]
    assert not [p for p in builds["first"].problems if p.page in ("intro", "good")], "links to the failed pages resolve"
    homework = pages["homework/hw"]
    assert "square works:" in homework and "True" in homework, "outputs before the failing cell are shown"
    assert "not implemented yet" in homework and "return x * x" not in homework, "the student version, no solution"
    assert "NameError" not in homework.split("rl4lm-build-failed -->", 2)[-1], "no traceback (it would show solution lines)"


def test_failed_pages_are_marked_so_that_they_are_not_served_as_good(builds):
    pages = builds["html_after_first"]
    for page in ("bad", "homework/hw", "homework/typo"):
        assert '<div class="rl4lm-build-failed"' in pages[page]
    assert "ZeroDivisionError" in pages["bad"].split("rl4lm-build-failed -->")[1]
    assert "page bad:" in pages[FAILED_FILE] and "page homework/hw:" in pages[FAILED_FILE]
    assert "page homework/typo:" in pages[FAILED_FILE]


def test_an_unchanged_failed_build_fails_again_and_reuses_only_successful_runs(builds):
    """Before: the second `jupyter-book build` found nothing outdated and exited 0 over the broken HTML."""
    second = builds["second"]
    assert not second.ok
    assert sorted(second.failed_pages) == ["bad", "homework/hw", "homework/typo"]
    log = (builds["book"] / "second.log").read_text()
    assert "executing homework/solutions/hw.md" in log, "a failed solution run is not cached: it runs again"
    assert log.count("Executing notebook using") == 1, "only the failed page is executed again, the good one comes from the cache"
    jupyter_cache, homework_cache = builds["cached_after_second"]
    assert jupyter_cache == {"good.md"}, "myst-nb's cache holds the successful run only"
    assert homework_cache == [], "a failed homework run is not cached"


def test_a_fixed_build_succeeds_and_drops_the_marks(builds):
    third = builds["third"]
    assert third.ok, third.summary()
    assert not (third.html / FAILED_FILE).exists()
    assert not [p for p in third.html.rglob("*.html") if "rl4lm-build-failed" in p.read_text()]
    assert cached_notebooks(builds["out"]) == {"good.md", "bad.md"}
    assert len(list((builds["out"] / "_build" / "rl4lm-homework").glob("hw-*.ipynb"))) == 1


def test_the_command_line_exits_non_zero_with_the_list_of_failed_pages(tmp_path):
    book = tmp_path / "book"
    book.mkdir()
    (book / "_config.yml").write_text(CONFIG)
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    (book / "intro.md").write_text("# Intro\n\nA link to {doc}`missing`.\n")
    result = subprocess.run([sys.executable, "-m", "rl4lm_book.build", "--path-output", str(tmp_path / "out"), str(book)],
                            capture_output=True, text=True, env=dict(os.environ, RL4LM_PROFILE="tiny"))
    assert result.returncode == 1
    assert "The book build FAILED" in result.stderr and "page intro:" in result.stderr, result.stderr
    assert "unknown document" in result.stderr
