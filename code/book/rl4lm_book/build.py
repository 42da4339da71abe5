"""``python -m rl4lm_book.build [--path-output DIR] [BOOK_DIR]``: the one way the site is built (``make book``, the tests).

It runs ``jupyter-book build BOOK_DIR --all -W -n --keep-going``:

- ``--all`` makes Sphinx re-read every page, so that a page that failed in the last build is executed
  and warns again, instead of Sphinx finding nothing outdated and exiting 0 over the broken HTML.
  Unchanged pages are not re-executed: myst-nb's execution cache (jupyter-cache) stores successful runs
  only (a failed run records its traceback, never a cached notebook), and the homework cache of
  :mod:`.sphinx_ext` likewise.
- ``-W --keep-going``: every warning fails the build, but only at the end, so that every page is built
  and every problem reported in one run.

On failure it lists the pages that failed (with the failing cell and error where the log tells them),
writes ``BUILD-FAILED.txt`` into the HTML folder and puts a red banner at the top of each failed page
(of every page when the problem is not tied to a page, or when the build stopped), so that the HTML is
not served as if good; the exit status is non-zero. The next successful build rewrites every page and
removes the file.
"""
from __future__ import annotations

import argparse
import html
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .book import ROOT

FLAGS = ["--all", "-W", "-n", "--keep-going"]
FAILED_FILE = "BUILD-FAILED.txt"
BANNER_START, BANNER_END = "<!-- rl4lm-build-failed -->", "<!-- /rl4lm-build-failed -->"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# "<location>: WARNING: <message>" (location: path, path:line, or none), as Sphinx and docutils write them
WARNING_LINE = re.compile(r"^(?:(?P<location>\S.*?): )?(?P<level>WARNING|ERROR|CRITICAL|SEVERE): (?P<message>.*)$")
REPORT = re.compile(r"Notebook exception traceback saved in: (?P<path>\S+)")


@dataclass
class Problem:
    """One warning of the build: the page it belongs to (None: the whole site), where, and what."""

    page: str | None
    location: str
    message: str


@dataclass
class BuildResult:
    """What a build did: exit status, where the HTML is, the log, the problems found in the output."""

    returncode: int
    html: Path
    log: Path | None
    seconds: float
    problems: list[Problem] = field(default_factory=list)
    stopped: bool = False  # the build raised (an exception, not warnings): no page list can be trusted

    @property
    def ok(self) -> bool:
        """True when the build exited 0."""
        return self.returncode == 0

    @property
    def failed_pages(self) -> list[str]:
        """Pages with at least one problem, in the order they were reported."""
        return list(dict.fromkeys(p.page for p in self.problems if p.page is not None))

    def summary(self) -> str:
        """A few lines: which pages failed and why, or that the build succeeded."""
        if self.ok:
            return f"The book built in {self.seconds:.0f} s: file://{self.html / 'index.html'}"
        lines = [f"The book build FAILED (exit {self.returncode}, {self.seconds:.0f} s); the HTML in {self.html} is marked as failed."]
        if self.stopped:
            lines.append("  The build stopped with an error before it finished: every page may be stale.")
        for page in self.failed_pages:
            lines.append(f"  page {page}:")
            lines += [f"    {message}" for message in dict.fromkeys(p.message for p in self.problems if p.page == page)]
        site = list(dict.fromkeys(f"{p.location}: {p.message}" if p.location else p.message for p in self.problems if p.page is None))
        if site:
            lines.append("  the whole site:")
            lines += [f"    {message}" for message in site]
        if not self.problems and not self.stopped:
            lines.append("  No warning was found in the output: see the log.")
        if self.log is not None:
            lines.append(f"  Log: {self.log}")
        return "\n".join(lines)


def html_folder(book: Path, path_output: Path | None = None) -> Path:
    """Where jupyter-book writes the HTML of ``book`` (``--path-output`` moves the whole ``_build``)."""
    return Path(path_output or book) / "_build" / "html"


def command(book: Path, path_output: Path | None = None) -> list[str]:
    """The jupyter-book command line of a build (the jupyter-book of this Python)."""
    script = Path(sys.executable).with_name("jupyter-book")
    jb = [str(script)] if script.exists() else [sys.executable, "-c", "from jupyter_book.cli.main import main; main()"]
    output = ["--path-output", str(path_output)] if path_output is not None else []
    return [*jb, "build", str(book), *output, *FLAGS]


def _page_of(location: str, book: Path, html: Path) -> str | None:
    """The page (docname) a warning location belongs to; None when it is not a built page of the book."""
    path_text = re.sub(r":\d*$", "", location.strip())
    if not path_text or path_text.startswith("<"):
        return None
    path = Path(path_text)
    path = (book / path) if not path.is_absolute() else path
    try:
        relative = path.resolve().relative_to(book.resolve())
    except ValueError:
        return None
    if relative.parts[:2] == ("homework", "solutions"):  # a homework source: its page is the student notebook
        relative = Path("homework") / relative.name
    page = relative.with_suffix("").as_posix()
    return page if (html / f"{page}.html").exists() else None


def _report_detail(report: Path, book: Path, page: str) -> str | None:
    """'cell 2 `1 / 0` raised ZeroDivisionError: division by zero' from a myst-nb traceback report."""
    try:
        text = ANSI.sub("", report.read_text())
    except OSError:
        return None
    match = re.search(r"An error occurred while executing the following cell:\n-+\n(?P<cell>.*?)\n-+\n", text, re.DOTALL)
    if match is None:
        return None
    cell = match.group("cell")
    lines = [line for line in text[match.end():].splitlines() if line.strip()]
    error = lines[-1].strip() if lines else "an error"
    index = ""
    for path in (book / f"{page}.md", book / f"{page}.ipynb"):
        if path.is_file():
            import jupytext

            try:
                cells = jupytext.read(path).cells
            except Exception:  # not readable as a notebook: no index, the cell's text is enough
                break
            index = next((f" {i}" for i, c in enumerate(cells) if c.source.strip() == cell.strip()), "")
            break
    first = cell.strip().splitlines()[0] if cell.strip() else ""
    shown = first if len(first) <= 60 else first[:57] + "..."
    return f"cell{index} `{shown}` raised {error} (traceback: {report})"


def parse_problems(output: str, book: Path, html: Path) -> list[Problem]:
    """The warnings and errors in a build's output, each tied to its page where it has one."""
    problems = []
    for raw in output.splitlines():
        line = ANSI.sub("", raw).rstrip()
        match = WARNING_LINE.match(line)
        if match is None:
            continue
        location, message = match.group("location") or "", match.group("message")
        page = _page_of(location, book, html) if location else None
        report = REPORT.search(message)
        detail = _report_detail(Path(report.group("path")), book, page) if report and page is not None else None
        if detail is not None:  # replaces myst-nb's "Executing notebook failed: CellExecutionError" of the same page
            problems = [p for p in problems if not (p.page == page and p.message.startswith("Executing notebook failed"))]
            message = f"executing the page failed: {detail}"
        problems.append(Problem(page, location, message))
    return problems


def _banner(text: str) -> str:
    """The red block put at the top of a page that failed."""
    return (f'{BANNER_START}<div class="rl4lm-build-failed" role="alert" style="background:#b00020;color:#fff;'
            f'padding:0.75em 1em;font-weight:bold;position:relative;z-index:10000">{html.escape(text)}</div>{BANNER_END}')


def mark_failed(result: BuildResult) -> list[Path]:
    """Write ``BUILD-FAILED.txt`` and a banner into each failed page (every page if the failure is site-wide)."""
    if not result.html.is_dir():
        return []
    when = datetime.now().strftime("%Y-%m-%d %H:%M")
    (result.html / FAILED_FILE).write_text(f"The build of {when} failed; these pages are not good:\n{result.summary()}\n")
    site_wide = result.stopped or any(p.page is None for p in result.problems) or not result.problems
    pages = sorted(result.html.rglob("*.html")) if site_wide else [result.html / f"{p}.html" for p in result.failed_pages]
    marked = []
    for path in pages:
        page = path.relative_to(result.html).with_suffix("").as_posix()
        messages = [p.message for p in result.problems if p.page == page]
        text = (f"This page failed to build ({when}): {messages[0]}" if messages else
                f"The last build of this site failed ({when}): this page may be stale or incomplete.")
        text += f" See {FAILED_FILE} at the root of the site."
        content = path.read_text(errors="replace")
        content = re.sub(re.escape(BANNER_START) + ".*?" + re.escape(BANNER_END), "", content, flags=re.DOTALL)
        body = re.search(r"<body[^>]*>", content)
        if body is not None:
            path.write_text(content[: body.end()] + _banner(text) + content[body.end():])
            marked.append(path)
    return marked


def build(book: Path = ROOT, path_output: Path | None = None, log: Path | None = None, echo: bool = True,
          env: dict[str, str] | None = None) -> BuildResult:
    """Build the book at ``book`` (HTML under ``path_output/_build/html``); echo and/or log the output; mark a failure."""
    book = Path(book).absolute()
    path_output = Path(path_output).absolute() if path_output is not None else None
    html_dir = html_folder(book, path_output)
    (html_dir / FAILED_FILE).unlink(missing_ok=True)
    env = dict(os.environ if env is None else env)
    env.setdefault("NO_COLOR", "1")  # fewer colour codes in the log (Sphinx under jupyter-book colours anyway: they are stripped)
    env.setdefault("PYTHONUNBUFFERED", "1")
    start = time.perf_counter()
    chunks: list[str] = []
    out = log.open("w") if log is not None else None
    try:
        with subprocess.Popen(command(book, path_output), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace", env=env, cwd=book) as process:
            assert process.stdout is not None
            for line in process.stdout:
                chunks.append(line)
                if out is not None:
                    out.write(line)
                if echo:
                    sys.stdout.write(line)
                    sys.stdout.flush()
        returncode = process.returncode
    finally:
        if out is not None:
            out.close()
    output = "".join(chunks)
    result = BuildResult(returncode, html_dir, log, time.perf_counter() - start, parse_problems(output, book, html_dir))
    # jupyter-book says "There was an error in building your book" when Sphinx raised (rather than warned)
    result.stopped = returncode != 0 and ("There was an error in building your" in output or not result.problems)
    if not result.ok:
        mark_failed(result)
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line: build, print where the book is or which pages failed; exit status 1 on failure."""
    parser = argparse.ArgumentParser(prog="python -m rl4lm_book.build", description=__doc__.split("\n")[0])
    parser.add_argument("book", nargs="?", type=Path, default=ROOT, help="the book folder (default: this repository)")
    parser.add_argument("--path-output", type=Path, default=None, help="write _build/ here instead of into the book folder")
    parser.add_argument("--log", type=Path, default=None, help="also write the build output to this file")
    args = parser.parse_args(argv)
    result = build(args.book, args.path_output, args.log)
    print(result.summary(), file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
