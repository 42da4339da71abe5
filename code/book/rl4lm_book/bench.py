"""``make bench``: execution time of every notebook of the book (median of runs) and of the tiny-asset build.

Each is timed idle and while a second process keeps one core busy (a student's laptop is rarely idle), with
the ratio. Timings are reported, never asserted. Usage:
``python -m rl4lm_book.bench [--repeat N] [--skip-tiny] [--no-busy] [PAGE ...]``.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import statistics
import subprocess
import sys
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


@contextlib.contextmanager
def competing_process():
    """A second process that keeps one core busy, as another program does on a student's laptop."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        busy.kill()
        busy.wait()


def timed(run, repeat: int, busy: bool) -> list[float]:
    """``repeat`` timings of ``run()``, with one core kept busy by another process if ``busy``."""
    with competing_process() if busy else contextlib.nullcontext():
        return [run() for _ in range(repeat)]


def report(name: str, idle: list[float], busy: list[float] | None) -> str:
    """One table row: median (min-max) idle, and with a competing process, and their ratio."""
    row = f"{name:<44} {statistics.median(idle):7.1f} ({min(idle):.1f}-{max(idle):.1f})"
    if busy:
        row += f" {statistics.median(busy):9.1f} ({min(busy):.1f}-{max(busy):.1f}) {statistics.median(busy) / statistics.median(idle):6.2f}"
    return row


def main() -> None:
    """Run the benchmarks and print a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=int(os.environ.get("BENCH_REPEAT", "3")))
    parser.add_argument("--skip-tiny", action="store_true", help="do not time the tiny-asset build")
    parser.add_argument("--no-busy", action="store_true", help="skip the runs with a competing process")
    parser.add_argument("pages", nargs="*", help="only these pages (paths relative to the repository)")
    args = parser.parse_args()
    os.environ.setdefault("RL4LM_PROFILE", "tiny")
    pages = [ROOT / p for p in args.pages] or executable_pages()
    print(f"profile={os.environ['RL4LM_PROFILE']}  cores={os.cpu_count()}  repeat={args.repeat}  seconds, median (min-max);"
          " 'busy': while another process keeps one core busy")
    print(f"{'what':<44} {'idle':>7} {'':11} {'busy':>9} {'':11} {'busy/idle':>6}")
    jobs = [] if args.skip_tiny else [("tiny assets: build from scratch", time_tiny_build)]
    jobs += [(str(page.relative_to(ROOT)), functools.partial(time_notebook, page)) for page in pages]
    for name, run in jobs:
        idle = timed(run, args.repeat, busy=False)
        busy = None if args.no_busy else timed(run, args.repeat, busy=True)
        print(report(name, idle, busy), flush=True)


if __name__ == "__main__":
    main()
