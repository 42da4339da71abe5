"""Shared fixtures: the site is built (every page executed once, tiny profile) at most once per test run."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from helpers import ROOT
from rl4lm_book.build import build

os.environ.setdefault("RL4LM_PROFILE", "tiny")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests run offline: nothing may reach the Hugging Face hub
# The tests build and use their own tiny assets (once per clone, kept until `make clean`), never a reader's cache:
# a fresh clone's `make test` exercises a first build, and a damaged personal cache cannot make the tests pass or fail.
os.environ.setdefault("RL4LM_CACHE", str(ROOT / "_build" / "test-cache"))
BUILD = ROOT / "_build" / "test"


@pytest.fixture(scope="session")
def built_site() -> Path:
    """Build the book from scratch with warnings as errors (``rl4lm_book.build``, as ``make book``); return the HTML folder."""
    shutil.rmtree(BUILD, ignore_errors=True)
    BUILD.mkdir(parents=True)
    log = BUILD / "build.log"
    result = build(ROOT, path_output=BUILD, log=log, echo=False, env=dict(os.environ, RL4LM_PROFILE="tiny"))
    (BUILD / "build-seconds.txt").write_text(f"{result.seconds:.1f}\n")
    if not result.ok:
        tail = "\n".join(log.read_text().splitlines()[-60:])
        pytest.fail(f"{result.summary()}\nlast lines of {log}:\n{tail}", pytrace=False)
    return result.html


def pytest_collection_modifyitems(session, config, items):
    """Run tests/test_assets.py first: in a fresh clone its first test watches the first tiny build, which any other
    test that loads a model would otherwise start (and then that test is skipped)."""
    items.sort(key=lambda item: item.path.name != "test_assets.py")  # stable: every other order is kept
