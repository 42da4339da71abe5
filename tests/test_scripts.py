"""The runnable scripts (code/lectures, code/labs) run in the tiny profile and print what they promise."""
from __future__ import annotations

import json
import os

import pytest

from helpers import ROOT, lecture_module, run_script
from helpers import lecture_refusal as refused


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


LECTURES = sorted(p.name for p in (ROOT / "code" / "lectures").glob("s[0-9][0-9]_*.py"))


@pytest.mark.parametrize("script", LECTURES)
def test_every_option_of_a_lecture_script_has_a_help_text_that_help_prints(script):
    """Every lecture script: each option has a help text of a sentence, and --help (exit 0) names every option."""
    options = [action for action in lecture_module(script).parser()._actions if action.option_strings != ["-h", "--help"]]
    assert options and all(len(action.help or "") > 20 for action in options), [a.dest for a in options if len(a.help or "") <= 20]
    out = run_script(f"code/lectures/{script}", "--help")
    assert out.returncode == 0 and "usage:" in out.stdout
    missing = [flag for action in options for flag in action.option_strings if flag not in out.stdout]
    assert not missing, f"--help of {script} does not name {missing}"


NEXT_TOKEN_REFUSALS = {
    "top 0": (["--top", "0"], "--top must be at least 1, not 0"),
    "top beyond the vocabulary": (["--top", "2000"], "--top 2000 is more than the vocabulary of the model (632 tokens)"),
    "top not a number": (["--top", "ten"], "argument --top: invalid int value: 'ten'"),
    "empty prompt": (["--prompt", ""], "--prompt is empty"),
    "blank prompt": (["--prompt", "   "], "--prompt is empty"),
    "empty text": (["--text", ""], "--text is empty"),
    "one-token text": (["--text", "this"], "is a single token; surprisal needs at least two"),
    "text beyond the context": (["--text", "a " * 300], "more than the model's context of 256"),
    "unknown option": (["--temperature", "2"], "unrecognized arguments: --temperature 2"),
}


@pytest.mark.parametrize("case", NEXT_TOKEN_REFUSALS, ids=str)
def test_next_token_script_refuses_a_bad_value_in_one_line(case):
    args, message = NEXT_TOKEN_REFUSALS[case]
    assert message in refused("s01_next_token.py", *args)


DECODING_REFUSALS = {
    "no new tokens": (["--new-tokens", "0"], "--new-tokens must be at least 1, not 0"),
    "negative new tokens": (["--new-tokens", "-5"], "--new-tokens must be at least 1, not -5"),
    "empty prompt": (["--prompt", ""], "--prompt is empty"),
    "negative seed": (["--seed", "-1"], "--seed must be between 0 and"),
    "seed not a number": (["--seed", "0.5"], "argument --seed: invalid int value: '0.5'"),
    "continuation beyond the context": (["--new-tokens", "300"], "exceed the model's context of 256 tokens; use --new-tokens 253 or less"),
    "prompt filling the context": (["--prompt", "a " * 300], "leaves no room in the model's context of 256"),
}


@pytest.mark.parametrize("case", DECODING_REFUSALS, ids=str)
def test_decoding_script_refuses_a_bad_value_in_one_line(case):
    args, message = DECODING_REFUSALS[case]
    assert message in refused("s02_decoding_schemes.py", *args)


@pytest.mark.parametrize("script", LECTURES)
def test_a_lecture_script_explains_an_unknown_profile_in_one_line(script):
    env = dict(os.environ, RL4LM_PROFILE="huge")
    assert "Unknown profile 'huge'" in refused(script, env=env)


def test_decoding_script_stops_at_the_end_of_text_token():
    """With room for 60 tokens, a tiny-profile review ends earlier: the continuation stops at its end-of-text token."""
    lines = [line for line in run("s02_decoding_schemes.py", "--new-tokens", "60").splitlines() if "log P/token" in line]
    assert len(lines) == 7
    stopped = {line[:22].strip(): int(line[22:].split()[0]) for line in lines if line.endswith("[end of text]")}
    assert "greedy" in stopped and "pure sampling" in stopped, lines
    assert all(1 <= tokens < 60 for tokens in stopped.values()), stopped
    assert all(line.count("[end of text]") <= 1 for line in lines)


def test_every_scheme_ends_its_continuation_at_the_first_end_of_text_token(monkeypatch):
    """Greedy and sampled continuations are the unstopped ones cut after their first end-of-text token: nothing is generated after it."""
    import importlib

    import torch

    from rl4lm import profiles
    from rl4lm.lm import decoding

    monkeypatch.syspath_prepend(str(ROOT / "code" / "lectures"))
    script = importlib.import_module("s02_decoding_schemes")
    tokenizer, model = profiles.load_tokenizer("lm"), profiles.load_model("lm")
    eos, ids = tokenizer.eos_token_id, tokenizer("this comedy was", return_tensors="pt").input_ids
    outputs = script.continue_with_every_scheme(model, ids, 60, seed=0, eos_token_id=eos)
    cut = lambda out: decoding.cut_at_eos(out[:, ids.shape[1]:].tolist(), eos)[0]  # noqa: E731
    for scheme, out in outputs.items():
        new = out[0, ids.shape[1]:].tolist()
        assert new.count(eos) <= 1 and (eos not in new or new[-1] == eos), scheme
    assert cut(decoding.greedy_decode(model, ids, 60)) == outputs["greedy"][0, ids.shape[1]:].tolist()
    unstopped = decoding.sample(model, ids, 60, generator=torch.Generator().manual_seed(0))
    assert cut(unstopped) == outputs["pure sampling"][0, ids.shape[1]:].tolist()
    assert outputs["greedy"][0, -1].item() == eos and outputs["greedy"].shape[1] - ids.shape[1] < 60


def test_decoding_script_is_deterministic_with_its_seed():
    first, again = (run("s02_decoding_schemes.py", "--new-tokens", "12", "--seed", "3") for _ in range(2))
    other = run("s02_decoding_schemes.py", "--new-tokens", "12", "--seed", "4")
    assert first == again, "the same seed prints the same continuations"
    sampled = lambda printed: [line for line in printed.splitlines() if line.startswith(("pure", "temperature", "top-"))]  # noqa: E731
    assert sampled(first) != sampled(other), "another seed draws other samples"
    deterministic = lambda printed: [line for line in printed.splitlines() if line.startswith(("greedy", "beam"))]  # noqa: E731
    assert deterministic(first) == deterministic(other), "greedy and beam search do not depend on the seed"


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
