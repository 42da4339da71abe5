"""``make bench``: execution time of every notebook of the book (median of runs) and of the tiny-asset build.

Timings are reported, never asserted. Usage: ``python -m rl4lm_book.bench [--repeat N] [--skip-tiny] [PAGE ...]``.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

from . import assignments
from .book import ROOT, toc_documents


def executable_pages() -> list[Path]:
    """Pages of the table of contents that hold code cells, and the homework solution sources."""
    pages = [ROOT / f"{name}.md" for name in toc_documents()]
    pages = [p for p in pages if p.exists() and "{code-cell}" in p.read_text()]
    return pages + assignments.sources()


def time_notebook(path: Path) -> float:
    """Seconds to execute one page or homework source top to bottom in a fresh kernel."""
    nb = assignments.read_source(path)
    cwd = path.parent.parent if path.parent.name == "solutions" else path.parent
    start = time.perf_counter()
    assignments.execute(nb, cwd=cwd)
    return time.perf_counter() - start


def time_tiny_build() -> float:
    """Seconds to build every tiny asset from scratch, in a temporary cache folder."""
    from rl4lm.assets import tiny

    old = os.environ.get("RL4LM_CACHE")
    with tempfile.TemporaryDirectory() as folder:
        os.environ["RL4LM_CACHE"] = folder
        try:
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # the build's progress line would split the table
                tiny.build_all(force=True)
            return time.perf_counter() - start
        finally:
            if old is None:
                os.environ.pop("RL4LM_CACHE")
            else:
                os.environ["RL4LM_CACHE"] = old


def report(name: str, runs: list[float]) -> str:
    """One table row: median, min, max over runs."""
    return f"{name:<48} {statistics.median(runs):8.1f} {min(runs):8.1f} {max(runs):8.1f} {len(runs):5d}"


def main() -> None:
    """Run the benchmarks and print a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=int(os.environ.get("BENCH_REPEAT", "3")))
    parser.add_argument("--skip-tiny", action="store_true", help="do not time the tiny-asset build")
    parser.add_argument("pages", nargs="*", help="only these pages (paths relative to the repository)")
    args = parser.parse_args()
    os.environ.setdefault("RL4LM_PROFILE", "tiny")
    pages = [ROOT / p for p in args.pages] or executable_pages()
    print(f"profile={os.environ['RL4LM_PROFILE']}  cores={os.cpu_count()}  repeat={args.repeat}  (seconds)")
    print(f"{'what':<48} {'median':>8} {'min':>8} {'max':>8} {'runs':>5}")
    if not args.skip_tiny:
        print(report("tiny assets: build from scratch", [time_tiny_build() for _ in range(args.repeat)]), flush=True)
    for page in pages:
        print(report(str(page.relative_to(ROOT)), [time_notebook(page) for _ in range(args.repeat)]), flush=True)


if __name__ == "__main__":
    main()
