"""The runnable lecture scripts in code/lectures run in the tiny profile and print what they promise."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT

LECTURES = ROOT / "code" / "lectures"


def run(script: str, *args: str) -> str:
    """Run one lecture script in the tiny profile and return what it printed."""
    env = dict(os.environ, RL4LM_PROFILE="tiny")
    out = subprocess.run([sys.executable, str(LECTURES / script), *args], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_next_token_script_prints_a_distribution_and_surprisals():
    printed = run("s01_next_token.py", "--top", "5", "--text", "this drama was dull .")
    probabilities = [float(line.split()[-2]) for line in printed.splitlines() if line.endswith("#") or "#" in line]
    assert len(probabilities) == 5 and probabilities == sorted(probabilities, reverse=True)
    assert "' dull'" in printed and "surprisal" in printed


@pytest.fixture(scope="module")
def decoding_output() -> str:
    """What the decoding script prints (run once for all schemes)."""
    return run("s02_decoding_schemes.py", "--new-tokens", "8")


@pytest.mark.parametrize("scheme", ["greedy", "beam search", "pure sampling", "top-k", "top-p", "temperature 0.5"])
def test_decoding_script_prints_every_scheme(decoding_output, scheme):
    line = next(line for line in decoding_output.splitlines() if line.startswith(scheme))
    assert "this comedy was" in line and "log P/token" in line
