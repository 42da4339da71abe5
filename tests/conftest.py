"""Shared fixtures: the site is built (every page executed once, tiny profile) at most once per test run."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rl4lm_book.book import ROOT, toc_documents  # noqa: F401  (re-exported for the tests)

os.environ.setdefault("RL4LM_PROFILE", "tiny")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests run offline: nothing may reach the Hugging Face hub
BUILD = ROOT / "_build" / "test"
SCREENSHOTS = ROOT / "_build" / "screenshots"


@pytest.fixture(scope="session")
def built_site() -> Path:
    """Build the book from scratch with warnings as errors; return the HTML folder."""
    shutil.rmtree(BUILD, ignore_errors=True)
    BUILD.mkdir(parents=True)
    env = dict(os.environ, RL4LM_PROFILE="tiny")
    jb = Path(sys.executable).with_name("jupyter-book")
    start = time.perf_counter()
    log = BUILD / "build.log"
    with log.open("w") as out:
        result = subprocess.run([str(jb), "build", str(ROOT), "--path-output", str(BUILD), "-W", "-n", "--keep-going"],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    seconds = time.perf_counter() - start
    (BUILD / "build-seconds.txt").write_text(f"{seconds:.1f}\n")
    if result.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-60:])
        pytest.fail(f"jupyter-book build failed (exit {result.returncode}); last lines of {log}:\n{tail}", pytrace=False)
    return BUILD / "_build" / "html"
