"""The lecture scripts of sessions 8 and 12 (code/lectures): DPO and GRPO steps on a handful of pairs, the ReAct agent loop.

Each script runs once as a subprocess with its defaults (as an instructor runs it); the other runs call its ``main(argv)``
in this process, which skips Python's and torch's start-up. Refusals run as subprocesses through ``lecture_refusal``:
the scripts check their options before they import torch, so most refusals take a fraction of a second.
"""
from __future__ import annotations

import re

import pytest

from helpers import lecture_module
from helpers import lecture_output as run
from helpers import lecture_printed as printed
from helpers import lecture_refusal as refused

SCRIPTS = ("s08_dpo_grpo_steps.py", "s12_agent_loop.py")


# --- s08: DPO margins rise, GRPO advantages have zero mean per group, the run repeats with its seed --------------------

LOG = re.compile(r"^step +(\d+)  (.*)$")
PAIR = re.compile(r"^ +(\d+) +([+-]\d+\.\d{3}) +([+-]\d+\.\d{3}) +([+-]\d+\.\d{3})  '")
GROUP = re.compile(r"^group (\d+): '.*': mean reward (\d\.\d{3}), mean advantage ([+-]\d\.\d{3})")
SAMPLE = re.compile(r"^  reward ([01])  sentence ends (\d+)  advantage ([+-]\d+\.\d{3})  ")


def logged(text: str) -> list[dict[str, float]]:
    """Every 'step N  name value ...' line of rl4lm.labs.log, as {'step': N, name: value}, in printed order."""
    rows = []
    for line in text.splitlines():
        if match := LOG.match(line):
            values = match[2].split()
            rows.append({"step": int(match[1]), **{k: float(v) for k, v in zip(values[::2], values[1::2])}})
    return rows


def dpo_part(text: str) -> str:
    """The DPO section of the s08 script's output."""
    return text.split("\nGRPO on ")[0]


def first_groups(text: str) -> list[dict]:
    """Step 1's groups of the GRPO section: {'mean_reward', 'mean_advantage', 'samples': [(reward, advantage, sentence ends)]}."""
    groups = []
    for line in text.split("\nGRPO on ")[1].split("\nloss: ")[0].splitlines():
        if match := GROUP.match(line):
            groups.append({"mean_reward": float(match[2]), "mean_advantage": float(match[3]), "samples": []})
        elif match := SAMPLE.match(line):
            groups[-1]["samples"].append((int(match[1]), float(match[3]), int(match[2])))
    return groups


@pytest.fixture(scope="module")
def dpo_grpo() -> str:
    """What the s08 script prints from the command line with its defaults (DPO on 4 pairs, then GRPO on 2 prompts, 5 steps each)."""
    return run("s08_dpo_grpo_steps.py")


def test_dpo_margin_and_accuracy_rise_on_the_training_pairs(dpo_grpo):
    rows = logged(dpo_part(dpo_grpo))
    assert [row["step"] for row in rows] == [0, 1, 2, 3, 4, 5], dpo_grpo
    assert rows[0]["margin"] == 0 and rows[0]["accuracy"] == 0, "at step 0 the policy is the reference: every implicit reward is 0"
    margins, accuracies, losses = ([row[key] for row in rows[1:]] for key in ("margin", "accuracy", "loss"))
    assert all(later > earlier for earlier, later in zip([0.0, *margins], margins)), f"the margin grows at every step: {margins}"
    assert accuracies == sorted(accuracies) and accuracies[-1] == 1, accuracies
    assert losses[0] == pytest.approx(0.6931, abs=1e-4), "the first loss is -log sigma(0) = log 2"
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses


def test_dpo_reports_each_pairs_log_probability_change(dpo_grpo):
    pairs = [(float(m[2]), float(m[3]), float(m[4])) for line in dpo_part(dpo_grpo).splitlines() if (m := PAIR.match(line))]
    assert len(pairs) == 4, dpo_grpo
    beta = 0.1
    for d_chosen, d_rejected, margin in pairs:
        assert margin == pytest.approx(beta * (d_chosen - d_rejected), abs=2e-3)
        assert margin > 0 and d_rejected < 0, "after five steps every rejected response has lost probability"
    final_margin = logged(dpo_part(dpo_grpo))[-1]["margin"]
    assert sum(margin for _, _, margin in pairs) / 4 == pytest.approx(final_margin, abs=2e-3), "the last step's margin is the pairs' mean"


def test_grpo_prints_groups_whose_advantages_have_zero_mean(dpo_grpo):
    groups = first_groups(dpo_grpo)
    assert len(groups) == 2 and all(len(group["samples"]) == 8 for group in groups), dpo_grpo
    for group in groups:
        rewards, advantages, ends = zip(*group["samples"])
        assert all(r == (e == 2) for r, e in zip(rewards, ends)), "reward 1 exactly for two sentence ends (the rule)"
        assert sum(advantages) / 8 == pytest.approx(0, abs=1e-3) and group["mean_advantage"] == 0
        assert group["mean_reward"] == pytest.approx(sum(rewards) / 8, abs=1e-3)
        mean = sum(rewards) / 8
        assert all((a > 0) == (r > mean) for r, a in zip(rewards, advantages)), "advantage > 0 exactly for rewards above the group's mean"
        if len(set(rewards)) == 1:
            assert set(advantages) == {0.0}
    steps = logged(dpo_grpo.split("\nGRPO on ")[1])
    assert [row["step"] for row in steps] == [1, 2, 3, 4, 5] and set(steps[0]) == {"step", "loss", "reward_mean", "kl"}
    assert steps[0]["kl"] == 0 and all(row["kl"] > 0 for row in steps[1:]), "the k3 KL is 0 until the first update"
    assert steps[0]["reward_mean"] == pytest.approx(sum(g["mean_reward"] for g in groups) / 2, abs=1e-3)
    assert re.search(r"^step 5's groups, before its update$", dpo_grpo, re.M)


def test_dpo_and_grpo_steps_repeat_with_their_seed(dpo_grpo):
    assert printed("s08_dpo_grpo_steps.py") == dpo_grpo, "the same seed prints the same numbers, in this process as from the command line"
    other = printed("s08_dpo_grpo_steps.py", "--seed", "1", "--steps", "1", "--pairs", "2", "--prompts", "1", "--group", "4")
    assert logged(dpo_part(other))[1]["margin"] != logged(dpo_part(dpo_grpo))[1]["margin"], "another seed draws other pairs"
    assert len(first_groups(other)) == 1 and len(first_groups(other)[0]["samples"]) == 4


DPO_GRPO_REFUSALS = {
    "no pairs": (["--pairs", "0"], "--pairs must be between 1 and 64, not 0"),
    "too many pairs": (["--pairs", "100"], "--pairs must be between 1 and 64, not 100"),
    "group of one": (["--group", "1"], "--group must be between 2 and 32, not 1 (a group needs at least two completions"),
    "no steps": (["--steps", "0"], "--steps must be between 1 and 200, not 0"),
    "no prompts": (["--prompts", "0"], "--prompts must be between 1 and 16, not 0"),
    "zero beta": (["--beta", "0"], "--beta must be positive"),
    "negative KL weight": (["--kl-beta", "-0.1"], "--kl-beta must be 0 or more and finite, not -0.1"),
    "infinite KL weight": (["--kl-beta", "inf"], "--kl-beta must be 0 or more and finite, not inf"),
    "infinite beta": (["--beta", "inf"], "--beta must be positive and finite"),
    "zero learning rate": (["--lr", "0"], "--lr must be positive and at most 1, not 0.0"),
    "no new tokens": (["--new-tokens", "0"], "--new-tokens must be between 1 and 256, not 0"),
    "negative seed": (["--seed", "-1"], "--seed must be between 0 and"),
    "unknown method": (["--method", "ppo"], "argument --method: invalid choice: 'ppo'"),
    "hub name as model": (["--model", "gpt2"], "argument --model: invalid choice: 'gpt2'"),
}


@pytest.mark.parametrize("case", DPO_GRPO_REFUSALS, ids=str)
def test_dpo_grpo_steps_refuse_a_bad_value_in_one_line(case):
    args, message = DPO_GRPO_REFUSALS[case]
    assert message in refused("s08_dpo_grpo_steps.py", *args)


def test_a_model_too_large_for_the_gpu_is_one_line(capsys, monkeypatch):
    """An OLMo 2 1B stage with its reference and Adam's state overflows a T4: CUDA's error becomes one sentence."""
    import torch

    script = lecture_module("s08_dpo_grpo_steps.py")

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 5.53 GiB")

    monkeypatch.setattr(script, "dpo_steps", out_of_memory)
    with pytest.raises(SystemExit) as exit_status:
        script.main(["--method", "dpo", "--model", "pipeline_sft"])
    error = capsys.readouterr().err
    assert exit_status.value.code == 2 and error.count("\n") == 1
    assert "--model pipeline_sft does not fit the GPU's memory next to its frozen reference" in error


def test_grpo_refuses_completions_beyond_the_context(capsys):
    """Checked after the model is loaded, so in this process (a subprocess would load torch for one line)."""
    with pytest.raises(SystemExit) as exit_status:
        lecture_module("s08_dpo_grpo_steps.py").main(["--method", "grpo", "--new-tokens", "256", "--steps", "1"])
    error = capsys.readouterr().err
    assert exit_status.value.code == 2 and error.count("\n") == 1
    assert "--new-tokens = 256 after a prompt of" in error and "exceeds the model's 256 positions" in error


# --- s12: transcripts with the calculator's observations, the calculator alone, the solved count -----------------------

@pytest.fixture(scope="module")
def agent_loop() -> str:
    """What the s12 script prints from the command line with its defaults (questions 1-3, both modes, 4 steps)."""
    return run("s12_agent_loop.py")


def test_agent_transcripts_show_the_calculators_observations(agent_loop):
    from rl4lm.agents import CALCULATOR

    episodes = agent_loop.split("--- question ")[1:]
    assert [episode.split(" (")[0] for episode in episodes] == [f"{q}, {mode}" for q in (1, 2, 3)
                                                                for mode in ("free generation", "constrained choice")]
    assert all(episode.splitlines()[1].startswith("Question: A ") for episode in episodes)
    calls = re.findall(r"^Action: calculate\[(.*)\]\n(?:    \(probability .*\)\n)?Observation: (.*)$", agent_loop, re.M)
    assert calls, agent_loop
    for expression, observation in calls:
        assert observation == CALCULATOR.run(expression), "each observation is the calculator's value of the action"
    assert "Observation: 3.285714286" in episodes[1], "question 1, constrained: calculate[23 / 7] as the tiny model chooses it"
    assert all(re.search(r"^\S.*; expected \d+: (not )?solved$", episode, re.M) for episode in episodes)


def test_agent_counts_what_it_solved(agent_loop):
    free = len(re.findall(r"expected \d+: solved$", "".join(agent_loop.split("--- question ")[1::2]), re.M))
    chosen = len(re.findall(r"expected \d+: solved$", "".join(agent_loop.split("--- question ")[2::2]), re.M))
    assert f"solved: free generation {free} of 3, constrained choice {chosen} of 3\n" in agent_loop
    assert "tiny profile: the 0.3M-parameter review model has never seen arithmetic" in agent_loop


def test_agent_loop_is_the_same_for_every_seed_and_scores_given_answers():
    args = ["--question", "What is 2 + 3?", "--answer", "5", "--mode", "constrained", "--max-steps", "2"]
    first = printed("s12_agent_loop.py", *args, "--seed", "0")
    assert first == printed("s12_agent_loop.py", *args, "--seed", "0") == printed("s12_agent_loop.py", *args, "--seed", "9")
    assert re.search(r"; expected 5: (not )?solved$", first, re.M) and "solved: constrained choice" in first
    unscored = printed("s12_agent_loop.py", "--question", "What is 2 + 3?", "--mode", "free", "--max-steps", "1")
    assert "not scored (no expected answer; give --answer)" in unscored and "(1 not scored: no expected answer)" in unscored


@pytest.mark.parametrize(("expression", "value"), [("23 * 7", "161"), ("(7 + 9) / 2", "8"), ("1 / 3", "0.3333333333")])
def test_calculate_prints_the_calculators_value(expression, value):
    assert printed("s12_agent_loop.py", "--calculate", expression) == f"calculate[{expression}] = {value}\n"


AGENT_REFUSALS = {
    "huge power": (["--calculate", "2**99999"], "the calculator refuses --calculate '2**99999': expression raises to the power "
                                                "99999; exponents are limited to +-100"),
    "code instead of arithmetic": (["--calculate", "__import__('os')"], "expression uses a function call; the calculator knows only"),
    "division by zero": (["--calculate", "1 / 0"], "expression divides by zero"),
    "empty expression": (["--calculate", " "], "--calculate is empty"),
    "empty question": (["--question", "1", "--question", ""], "--question number 2 is empty"),
    "no such course question": (["--question", "9"], "--question 9 names no course question; they are numbered 1 to 8"),
    "a negative question number": (["--question", "-3"], "--question -3 names no course question; they are numbered 1 to 8"),
    "an answer that is not a number": (["--question", "What is 2 + 3?", "--answer", "nan"], "--answer must be a finite number, not nan"),
    "the calculator and a question": (["--calculate", "2 + 3", "--question", "1"], "--calculate runs the calculator alone"),
    "answers without questions": (["--answer", "5"], "1 --answer for 3 questions: give one --answer per --question"),
    "no steps": (["--max-steps", "0"], "--max-steps must be between 1 and 20, not 0"),
    "unknown mode": (["--mode", "sampled"], "argument --mode: invalid choice: 'sampled'"),
    "negative seed": (["--seed", "-1"], "--seed must be between 0 and"),
}


@pytest.mark.parametrize("case", AGENT_REFUSALS, ids=str)
def test_agent_loop_refuses_a_bad_value_in_one_line(case):
    args, message = AGENT_REFUSALS[case]
    assert message in refused("s12_agent_loop.py", *args)
