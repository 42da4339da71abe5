"""The runnable scripts (code/lectures, code/labs) run in the tiny profile and print what they promise."""
from __future__ import annotations

import json

import pytest

from helpers import run_script


def run(script: str, *args: str) -> str:
    """Run one lecture script in the tiny profile and return what it printed."""
    return run_script(f"code/lectures/{script}", *args).stdout


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


def test_sft_lab_logs_metrics_and_ends_with_one_json_line():
    printed = run_script("code/labs/sft_qa.py", "--steps", "30", "--eval-rows", "16", "--log-every", "10").stdout
    lines = printed.strip().splitlines()
    assert [line.split()[:2] for line in lines[:-1]] == [["step", "10"], ["step", "20"], ["step", "30"]]
    results = json.loads(lines[-1])
    assert {"exact_match_before", "exact_match_after", "loss_first", "loss_last", "steps", "seconds"} <= set(results)
    assert results["steps"] == 30 and results["profile"] == "tiny"
    assert results["loss_last"] < results["loss_first"], "30 steps of teacher forcing lower the loss"
    assert 0.0 <= results["exact_match_after"] <= 1.0


def test_sft_lab_refuses_bad_arguments_in_one_line():
    out = run_script("code/labs/sft_qa.py", "--steps", "0", check=False)
    assert out.returncode != 0 and "must be at least 1" in out.stderr and "Traceback" not in out.stderr
    assert "--learning-rate" in run_script("code/labs/sft_qa.py", "--help").stdout
