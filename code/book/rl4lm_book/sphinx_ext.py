"""Sphinx extension of the webbook: offline MathJax and homework pages built from executed solutions.

- Slides: copies ``slides/`` (self-contained HTML) to the site's ``slides/``; pages link them with raw
  ``<a href="../slides/NAME.html">`` links, which the site tests check.
- MathJax: copies ``tex-svg-full.js`` from the PyPI package ``sphinx-mathjax-offline`` into the
  site's ``_static/mathjax`` so that math renders with no internet (``mathjax_path`` in _config.yml).
- Launch buttons: only on notebooks (.ipynb), the files Colab can open.
- Homework: executes every solution notebook once (nbclient), in a background thread while the session
  pages execute, and serves ``homework/<name>.ipynb`` to myst-nb as the student version with the solution
  run's outputs (homework pages are read last, so that the wait for them comes as late as possible).
  With ``RL4LM_SOLUTIONS=1`` the page shows the solution code instead. A solution that fails is a
  Sphinx warning naming the source file, the cell and the error (with ``-W --keep-going`` the build
  goes on and fails at the end); the failed run is not cached, and the page shows the outputs
  before the failing cell. A malformed source (solution markers, set-up cell) is a warning too, and
  the page is the committed student notebook without outputs.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
from sphinx.util import logging

from . import assignments
from .book import BookError, release_tag, repository_url

logger = logging.getLogger(__name__)

MATHJAX_FILE = "tex-svg-full.js"
SOLUTIONS_VARIABLE = "RL4LM_SOLUTIONS"


def mathjax_source() -> Path:
    """Path of the bundled MathJax 3 file inside the sphinx-mathjax-offline package."""
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None or spec.origin is None:
        raise RuntimeError("MathJax is served offline from the package sphinx-mathjax-offline; pip install -r requirements.txt")
    return Path(spec.origin).parent / "static" / "mathjax" / MATHJAX_FILE


def copy_static_assets(app, exception) -> None:
    """Copy MathJax into ``_static/mathjax`` and the HTML slides into ``slides/`` of the built site."""
    if exception is None and app.builder.format == "html":
        target = Path(app.outdir) / "_static" / "mathjax"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(mathjax_source(), target / MATHJAX_FILE)
        slides = Path(app.srcdir) / "slides"
        if slides.is_dir():
            shutil.copytree(slides, Path(app.outdir) / "slides", dirs_exist_ok=True)


def solutions_on() -> bool:
    """True when the site is built with solutions shown (``RL4LM_SOLUTIONS=1``)."""
    return os.environ.get(SOLUTIONS_VARIABLE, "0").lower() in {"1", "true", "yes", "on"}


def execute_solutions(app) -> None:
    """Start executing each homework source (once per content hash) in the background; source-read collects the pages.

    The solutions run one after another in one worker thread (each in its own kernel process) while Sphinx reads and
    executes the session pages in the main thread, so a 2-core machine keeps both cores busy; homework pages are read
    last (:func:`read_homework_last`) so that the main thread waits for them as late as possible. Problems become
    warnings (``rl4lm.homework``) in the main thread, never exceptions: the rest of the book still builds.
    """
    cache = Path(app.doctreedir).parent / "rl4lm-homework"
    cache.mkdir(parents=True, exist_ok=True)
    root = Path(app.srcdir)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rl4lm-homework")
    app.env_rl4lm_pages = {f"homework/{source.stem}": pool.submit(_publish, source, root, cache)
                           for source in assignments.sources(root)}
    pool.shutdown(wait=False)  # the submitted runs go on; nothing else is submitted


def _publish(source: Path, root: Path, cache: Path) -> tuple[str | None, list[tuple[str, str]]]:
    """(the published page text or None, [(warning, location)]) of one homework source; runs in the worker thread."""
    docname = f"homework/{source.stem}"
    warnings: list[tuple[str, str]] = []
    try:
        url, ref = repository_url(root), release_tag(root)
        assignments.student_notebook(assignments.read_source(source), url, ref, source=source)  # markers, before the run
        executed = _executed_solution(source, docname, cache, warnings)
        return assignments.render(assignments.published(executed, url, solutions_on(), ref, source=source)), warnings
    except BookError as error:
        warnings.append((f"{error}; {docname} shows the committed student notebook without outputs", _location(error, docname)))
        return None, warnings


def _location(error: BookError, docname: str) -> str:
    """Where a warning points: the line of the homework source when known, else the homework page."""
    source, line = getattr(error, "source", None), getattr(error, "line", None)
    return f"{Path(source).absolute()}:{line}" if source is not None and line else docname


def _executed_solution(source: Path, docname: str, cache: Path, warnings: list[tuple[str, str]]) -> nbformat.NotebookNode:
    """The executed solution notebook: from the cache, or run now (a failure is a warning and is not cached)."""
    executed_path = cache / f"{source.stem}-{assignments.content_hash(source)}.ipynb"
    if executed_path.exists():
        return nbformat.read(executed_path, as_version=4)
    start = time.perf_counter()
    print(f"[rl4lm] executing {assignments.display_path(source)} (solution notebook, in the background)")
    executed, failure = assignments.run_solution(source)
    if failure is not None:
        warnings.append((f"{failure}; {docname} shows the outputs before that cell and the run is not cached",
                         _location(failure, docname)))
        return assignments.outputs_before(executed, failure.cell_index or 0)
    nbformat.write(executed, executed_path)
    (cache / f"{source.stem}.seconds").write_text(f"{time.perf_counter() - start:.1f}\n")
    return executed


def read_homework_last(app, env, docnames: list[str]) -> None:
    """Reorder Sphinx's reading list in place so that the homework pages, still executing in the background, come last."""
    homework = set(getattr(app, "env_rl4lm_pages", {}))
    docnames.sort(key=lambda name: name in homework)  # stable: the other pages keep their order


def serve_homework(app, docname: str, source: list[str]) -> None:
    """Replace a student notebook's text by its published version (outputs from the solution run), waiting for the run."""
    future = getattr(app, "env_rl4lm_pages", {}).get(docname)
    if future is None:
        return
    page, warnings = future.result()
    for message, location in warnings:
        logger.warning(message, location=location, type="rl4lm", subtype="homework")
    if page is not None:
        source[0] = page


def drop_launch_buttons_on_text_pages(app, pagename, templatename, context, doctree) -> None:
    """Remove the Colab launch button from MyST text pages: Colab opens .ipynb files only."""
    if context.get("sourcename", "").endswith((".md", ".md.txt")) and "header_buttons" in context:
        context["header_buttons"] = [b for b in context["header_buttons"] if b.get("label") != "launch-buttons"]


def drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    """Keep each script once: sphinx-thebe's inline config is added twice, a JavaScript redeclaration error."""
    seen, unique = set(), []
    for script in context.get("script_files", []):
        key = (str(getattr(script, "filename", script) or ""), tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    if "script_files" in context:
        context["script_files"] = unique


def set_default_colour_mode(app, config) -> None:
    """Give the theme an explicit colour mode (an empty one is a console error in pydata-sphinx-theme)."""
    config.html_context.setdefault("default_mode", "light")


def always_reread_homework(app, env, added, changed, removed) -> list[str]:
    """Re-read homework pages every build: their text comes from the solution run, not from the file."""
    return list(getattr(app, "env_rl4lm_pages", {}))


def setup(app):
    """Register the event handlers."""
    app.connect("builder-inited", execute_solutions)
    app.connect("env-get-outdated", always_reread_homework)
    app.connect("env-before-read-docs", read_homework_last)
    app.connect("source-read", serve_homework)
    app.connect("build-finished", copy_static_assets)
    app.connect("html-page-context", drop_launch_buttons_on_text_pages, priority=900)
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    app.connect("config-inited", set_default_colour_mode, priority=900)
    return {"parallel_read_safe": False, "parallel_write_safe": True}
