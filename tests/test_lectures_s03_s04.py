"""The lecture scripts of sessions 3 and 4 (code/lectures): base vs tuned generations, PPO on CartPole, reward-model scores.

Each script runs once as a subprocess (as an instructor runs it); the other runs call its ``main(argv)`` in this process,
which skips Python's and torch's start-up. Refusals run as subprocesses through ``lecture_refusal``: the scripts check
their options before they import torch, so a refusal takes a fraction of a second.
"""
from __future__ import annotations

import contextlib
import re
import weakref

import pytest

from helpers import lecture_module
from helpers import lecture_output as run
from helpers import lecture_printed as printed
from helpers import lecture_refusal as refused

SCRIPTS = ("s03_generations.py", "s03_ppo_cartpole.py", "s04_reward_scores.py")
ALIVE_AT_LOAD: dict[str, list[int]] = {}  # script -> at each model load, how many models loaded before were still in memory


@contextlib.contextmanager
def counting_live_models(script: str):
    """Record in ALIVE_AT_LOAD[script] how many earlier models are alive at each rl4lm.profiles.load_model call.

    On a T4 two OLMo 2 1B models do not fit in float32: a script must drop one model before it loads the next.
    """
    from rl4lm import profiles

    loaded, alive = [], ALIVE_AT_LOAD.setdefault(script, [])
    original = profiles.load_model

    def load_model(*args, **kwargs):
        alive.append(sum(ref() is not None for ref in loaded))
        model = original(*args, **kwargs)
        loaded.append(weakref.ref(model))
        return model

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(profiles, "load_model", load_model)
        yield


# --- s03_generations: base vs SFT, both log-likelihoods of every answer -----------------------------------------------

ANSWER = re.compile(r"^  (\w+) answers \((\d+) tokens\): (.*)$")
LOG_P = re.compile(r"^      log P under (\w+) +(-?\d+\.\d+) +per token +(-?\d+\.\d+)$")


def answers_and_scores(text: str) -> list[dict]:
    """Per prompt: {author: (tokens, answer, {judge: (sum, per token)})} parsed from the generations script's output."""
    prompts = []
    for line in text.splitlines():
        if line.startswith("prompt "):
            prompts.append({})
        elif match := ANSWER.match(line):
            author = match[1]
            prompts[-1][author] = (int(match[2]), match[3], {})
        elif match := LOG_P.match(line):
            prompts[-1][author][2][match[1]] = (float(match[2]), float(match[3]))
    return prompts


@pytest.fixture(scope="module")
def generations() -> str:
    """What the generations script prints with its defaults (greedy answers to its three prompts)."""
    with counting_live_models("s03_generations.py"):
        return printed("s03_generations.py")


def test_generations_scores_each_answer_under_both_models(generations):
    prompts = answers_and_scores(generations)
    assert len(prompts) == 3, generations
    for prompt in prompts:
        assert set(prompt) == {"pipeline_base", "pipeline_sft"}
        for tokens, _, scores in prompt.values():
            assert set(scores) == {"pipeline_base", "pipeline_sft"}, "each answer is scored by both models"
            for total, per_token in scores.values():
                assert total < 0 and per_token == pytest.approx(total / tokens, abs=0.006)


def test_generations_show_each_model_preferring_its_own_answers(generations):
    prompts = answers_and_scores(generations)
    for prompt in prompts[:2]:  # the questions: the two models' answers differ, and each judge prefers its own
        (_, _, base_scores), (_, _, sft_scores) = prompt["pipeline_base"], prompt["pipeline_sft"]
        assert base_scores["pipeline_base"][1] > sft_scores["pipeline_base"][1]
        assert sft_scores["pipeline_sft"][1] > base_scores["pipeline_sft"][1]
    assert prompts[0]["pipeline_sft"][1].startswith("' yes'"), "the SFT model answers the question about a positive review"
    assert "pipeline_sft gives its own answer a higher log P per token than pipeline_base's on 3 of 3 prompts" in generations


def test_generations_are_deterministic_with_the_seed_when_sampled():
    args = ["--sample", "--temperature", "1.5", "--new-tokens", "10", "--prompt", "this drama was", "--prompt", "i saw this thriller"]
    first = run("s03_generations.py", *args, "--seed", "3")
    assert first == printed("s03_generations.py", *args, "--seed", "3"), "the same seed prints the same answers"
    other = printed("s03_generations.py", *args, "--seed", "4")
    answers = lambda text: [line for line in text.splitlines() if " answers (" in line]  # noqa: E731
    assert len(answers(first)) == 4 and answers(first) != answers(other), "another seed samples other answers"
    assert "sampling at temperature 1.5, seed 3" in first


GENERATIONS_REFUSALS = {
    "same role twice": (["--base", "pipeline_sft", "--tuned", "pipeline_sft"], "--base and --tuned are both pipeline_sft"),
    "unknown role": (["--tuned", "lm"], "argument --tuned: invalid choice: 'lm'"),
    "empty prompt": (["--prompt", "this comedy was", "--prompt", " "], "--prompt number 2 is empty"),
    "no new tokens": (["--new-tokens", "0"], "--new-tokens must be at least 1, not 0"),
    "temperature without sampling": (["--temperature", "0.7"], "--temperature needs --sample"),
    "zero temperature": (["--sample", "--temperature", "0"], "--temperature must be positive and finite, not 0.0"),
    "infinite temperature": (["--sample", "--temperature", "inf"], "--temperature must be positive and finite, not inf"),
    "greedy and sample": (["--greedy", "--sample"], "argument --sample: not allowed with argument --greedy"),
    "negative seed": (["--seed", "-1"], "--seed must be between 0 and"),
}


@pytest.mark.parametrize("case", GENERATIONS_REFUSALS, ids=str)
def test_generations_refuse_a_bad_value_in_one_line(case):
    args, message = GENERATIONS_REFUSALS[case]
    assert message in refused("s03_generations.py", *args)


def test_generations_leave_out_of_the_preference_count_prompts_answered_alike(capsys):
    """Two equal answers score equally under a judge: counting them as 'not preferred' would read as a preference."""
    answers = {"pipeline_base": [[5, 6], [7], [8, 9]], "pipeline_sft": [[5, 6], [4], [3]]}  # prompt 1: the same tokens
    log_p = {"pipeline_base": {"pipeline_base": [-2.0, -1.0, -1.0], "pipeline_sft": [-2.0, -3.0, -0.4]},
             "pipeline_sft": {"pipeline_base": [-4.0, -5.0, -6.0], "pipeline_sft": [-4.0, -1.0, -2.0]}}
    lecture_module("s03_generations.py").print_preferences("pipeline_base", "pipeline_sft", answers, log_p)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [  # per token: base prefers its own on prompt 2 (-1 > -3) but not 3 (-0.5 < -0.4); sft on both
        "pipeline_base gives its own answer a higher log P per token than pipeline_sft's on 1 of 2 prompts "
        "(left out: 1 prompt both models answered alike)",
        "pipeline_sft gives its own answer a higher log P per token than pipeline_base's on 2 of 2 prompts "
        "(left out: 1 prompt both models answered alike)"]
    alike = {"pipeline_base": [[5, 6]], "pipeline_sft": [[5, 6]]}
    lecture_module("s03_generations.py").print_preferences("pipeline_base", "pipeline_sft", alike, {
        judge: {author: [-2.0] for author in alike} for judge in alike})
    assert capsys.readouterr().out.startswith("both models answered every prompt with the same tokens: neither can prefer")


def test_generations_refuse_a_prompt_beyond_the_context(capsys):
    """Checked after a model is loaded, so in this process (a subprocess would load torch for one line)."""
    with pytest.raises(SystemExit) as exit_status:
        lecture_module("s03_generations.py").main(["--prompt", "a " * 240, "--new-tokens", "30"])
    error = capsys.readouterr().err
    assert exit_status.value.code == 2 and error.count("\n") == 1
    assert "which with --new-tokens 30 exceeds its context of 256 tokens" in error


# --- s03_ppo_cartpole: the return rises, the run repeats with its seed ------------------------------------------------

def step_lines(text: str) -> list[str]:
    """The progress lines ('step N  return_mean R ...') of the PPO script."""
    return [line for line in text.splitlines() if line.startswith("step ")]


def test_ppo_return_rises_over_a_short_run_and_repeats_with_its_seed():
    first = run("s03_ppo_cartpole.py", "--steps", "5120", "--seed", "0")
    lines = step_lines(first)
    returns = [float(line.split("return_mean")[1].split()[0]) for line in lines]
    assert len(returns) == 2 and returns[-1] > returns[0] + 20, first
    assert all(name in lines[0] for name in ("approx_kl", "clipfrac", "explained_variance"))
    assert re.search(r"^stopped after 5,120 steps \(.* s of training\): mean return \d+\.\d over the last 20 episodes", first, re.M), first
    assert step_lines(printed("s03_ppo_cartpole.py", "--steps", "5120", "--seed", "0")) == lines, "the same seed repeats the run"
    assert step_lines(printed("s03_ppo_cartpole.py", "--steps", "5120", "--seed", "1")) != lines, "another seed, another run"


def test_ppo_counts_its_batch_from_the_number_of_environments():
    text = printed("s03_ppo_cartpole.py", "--steps", "1280", "--envs", "4")
    assert "4 environments x 32 steps = 128 transitions per update" in text
    assert [line.split()[1] for line in step_lines(text)] == ["1280"], text


PPO_REFUSALS = {
    "steps below a batch": (["--steps", "100"], "--steps 100 is less than one update's batch of --envs 8 x 32 = 256 steps"),
    "steps below a larger batch": (["--steps", "500", "--envs", "16"], "--steps 500 is less than one update's batch of --envs 16 x 32 = 512"),
    "no environments": (["--envs", "0"], "--envs must be between 1 and 256, not 0"),
    "too many environments": (["--envs", "1000"], "--envs must be between 1 and 256, not 1000"),
    "negative seed": (["--seed", "-2"], "--seed must be between 0 and"),
    "steps not a number": (["--steps", "1e5"], "argument --steps: invalid int value: '1e5'"),
}


@pytest.mark.parametrize("case", PPO_REFUSALS, ids=str)
def test_ppo_refuses_a_bad_value_in_one_line(case):
    args, message = PPO_REFUSALS[case]
    assert message in refused("s03_ppo_cartpole.py", *args)


# --- s04_reward_scores: a reward model trained, samples scored by it and by the classifier ------------------------------

REWARD_LINE = re.compile(r"^ *(\d\.\d{4})  (.*)$")  # --scorer classifier: P(positive), sample
BOTH_LINE = re.compile(r"^ *(-?\d+\.\d{4})  (\d\.\d{4})  (.*)$")  # --scorer both: r_phi, P(positive), sample
ACCURACY = re.compile(r"^reward model r_phi: held-out preference accuracy (\d\.\d{3}) before, (\d\.\d{3}) after training on "
                      r"(\d+) pairs \((\d+) steps of batch 16, lr 0\.0001, \d+ s\); 300 held-out pairs$", re.M)
AGREEMENT = re.compile(r"^rank agreement of r_phi and P\(positive\) over (\d+) samples: concordance (\d\.\d{3}) .*"
                       r"Kendall's tau (-?\d\.\d{3})$", re.M)


def rewards_and_texts(text: str) -> list[tuple[float, str]]:
    """(P(positive), sample) of every sample line of the reward script with --scorer classifier, in printed order."""
    return [(float(m[1]), m[2]) for line in text.splitlines() if (m := REWARD_LINE.match(line))]


def both_scores(text: str) -> list[tuple[float, float, str]]:
    """(r_phi, P(positive), sample) of every sample line of the reward script with --scorer both, in printed order."""
    return [(float(m[1]), float(m[2]), m[3]) for line in text.splitlines() if (m := BOTH_LINE.match(line))]


def without_seconds(text: str) -> str:
    """The output with the reward model's training time masked, the one number that differs between two runs."""
    return re.sub(r", \d+ s\);", ", _ s);", text)


@pytest.fixture(scope="module")
def reward_table() -> str:
    """What the reward script prints with its default scorers (the reward model trained on the page's 640 pairs), 12 samples."""
    with counting_live_models("s04_reward_scores.py"):
        return printed("s04_reward_scores.py", "--samples", "6", "--new-tokens", "20")


def test_scripts_hold_one_model_at_a_time(generations, reward_table):
    assert ALIVE_AT_LOAD["s03_generations.py"] == [0, 0, 0], "base, tuned, base again: each freed before the next loads"
    assert ALIVE_AT_LOAD["s04_reward_scores.py"] == [0, 0, 0], "the LM, the reward model, the classifier: one at a time"


def test_release_memory_empties_the_cuda_cache_only_on_cuda(monkeypatch):
    import torch

    from rl4lm.labs import release_memory

    emptied = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    release_memory("cpu")
    assert emptied == []
    release_memory("cuda")
    release_memory("cuda:0")
    assert emptied == [True, True]


def test_reward_model_learns_the_preferences_before_scoring(reward_table):
    accuracy = ACCURACY.search(reward_table)
    assert accuracy, reward_table
    before, after = float(accuracy[1]), float(accuracy[2])
    assert (int(accuracy[3]), int(accuracy[4])) == (640, 40), "the page's 640 pairs in batches of 16"
    assert after >= before and after > 0.8, (before, after)  # tiny: 0.207 before, 1.000 after
    assert reward_table.index("held-out preference accuracy") < reward_table.index("prompt and continuation")


def test_samples_show_both_scores_sorted_by_the_learned_reward(reward_table):
    rows = both_scores(reward_table)
    learned, positive = [r for r, _, _ in rows], [p for _, p, _ in rows]
    assert len(rows) == 12 and re.search(r"^ +r_phi  P\(pos\)  prompt and continuation$", reward_table, re.M), reward_table
    assert learned == sorted(learned, reverse=True), "sorted by r_phi, highest first"
    assert positive != sorted(positive, reverse=True), "the classifier's column is not the sort key"
    assert all(0 <= p <= 1 for p in positive) and max(positive) > 0.5 > min(positive), "the samples span both sentiments"
    assert min(learned) < 0 < max(learned), "r_phi is a score in arbitrary units, not a probability"
    assert sum(s.startswith("this comedy was") for _, _, s in rows) == 6
    positives = sum(p > 0.5 for p in positive)
    for name, scores, share in (("r_phi", learned, ""), (r"P\(positive\)", positive, f", above 0.5 in {positives} of 12")):
        summary = re.search(rf"^{name} over 12 samples: mean (-?\d\.\d{{4}}), min (-?\d\.\d{{4}}), max (-?\d\.\d{{4}}){share}$",
                            reward_table, re.M)
        assert summary, (name, reward_table)
        assert float(summary[1]) == pytest.approx(sum(scores) / 12, abs=1e-3)
        assert (float(summary[2]), float(summary[3])) == (min(scores), max(scores))


def test_rank_agreement_of_the_two_scores(reward_table):
    from rl4lm.analysis.overoptimisation import concordance

    agreement = AGREEMENT.search(reward_table)
    assert agreement and int(agreement[1]) == 12, reward_table
    c, tau = float(agreement[2]), float(agreement[3])
    assert tau == pytest.approx(2 * c - 1, abs=2e-3) and c > 0.5, "tiny: both rank positive samples higher (c = 0.788)"
    rows = both_scores(reward_table)
    assert c == pytest.approx(concordance([p for _, p, _ in rows], [r for r, _, _ in rows]), abs=0.02), "P(positive) printed to 4 places"
    positive = [r for r, p, _ in rows if p > 0.5]  # the classifier's verdict, free of the order of its near-ties at 0 and 1
    negative = [r for r, p, _ in rows if p < 0.5]
    above = sum(rp > rn for rp in positive for rn in negative) / (len(positive) * len(negative))
    assert above > 0.9, "r_phi ranks nearly every sample the classifier calls positive above every negative one (tiny: 35 of 36 pairs)"
    assert re.search(r"^  concordance within each prompt .*: 'this comedy was' \d\.\d{3}, 'the new thriller is' \d\.\d{3}$",
                     reward_table, re.M), reward_table


def test_classifier_scorer_skips_the_reward_model(monkeypatch):
    import torch

    from rl4lm.rlhf import reward_model
    from rl4lm.rlhf import rewards as reward_functions

    def scored_without_gradient(*args, **kwargs):
        assert not torch.is_grad_enabled(), "scoring keeps no activations for a backward pass (a 1B judge on a T4)"
        return original(*args, **kwargs)

    original = reward_functions.sentiment_reward
    monkeypatch.setattr(reward_functions, "sentiment_reward", scored_without_gradient)

    def untouchable(*args, **kwargs):
        raise AssertionError("--scorer classifier must not build or train a reward model")

    monkeypatch.setattr(reward_model, "load_reward_model", untouchable)
    monkeypatch.setattr(reward_model, "train_reward_model", untouchable)
    text = printed("s04_reward_scores.py", "--scorer", "classifier", "--samples", "6", "--new-tokens", "20")
    assert "r_phi" not in text and "preference accuracy" not in text, text
    samples = rewards_and_texts(text)
    rewards = [reward for reward, _ in samples]
    assert len(samples) == 12 and rewards == sorted(rewards, reverse=True), text
    assert sum(s.startswith("this comedy was") for _, s in samples) == 6 and sum(s.startswith("the new thriller is") for _, s in samples) == 6
    assert all(0 <= reward <= 1 for reward in rewards) and rewards[0] > 0.5 > rewards[-1], "the samples span both sentiments"
    summary = re.search(r"P\(positive\) over 12 samples: mean (\d\.\d{4}), min (\d\.\d{4}), max (\d\.\d{4}), above 0\.5 in (\d+) of 12", text)
    assert summary, text
    assert int(summary[4]) == sum(reward > 0.5 for reward in rewards), "the count of samples the classifier calls positive"
    assert float(summary[1]) == pytest.approx(sum(rewards) / 12, abs=1e-3)
    assert (float(summary[2]), float(summary[3])) == (rewards[-1], rewards[0])


def test_reward_scores_are_deterministic_with_the_seed():
    args = ["--prompt", "this drama was", "--samples", "4", "--new-tokens", "12"]
    first = run("s04_reward_scores.py", *args, "--rm-pairs", "64", "--seed", "5")
    assert len(both_scores(first)) == 4 and "training on 64 pairs (4 steps" in first, first
    again = printed("s04_reward_scores.py", *args, "--rm-pairs", "64", "--seed", "5")
    assert without_seconds(first) == without_seconds(again), "the same seed, the same samples, reward model and scores"
    other = printed("s04_reward_scores.py", *args, "--scorer", "classifier", "--seed", "6")  # the samples come before any scoring
    assert sorted(t for _, _, t in both_scores(first)) != sorted(t for _, t in rewards_and_texts(other)), "another seed, other samples"


REWARD_REFUSALS = {
    "no samples": (["--samples", "0"], "--samples must be between 1 and 256, not 0"),
    "too many samples": (["--samples", "1000"], "--samples must be between 1 and 256, not 1000"),
    "empty prompt": (["--prompt", ""], "--prompt number 1 is empty"),
    "no new tokens": (["--new-tokens", "0"], "--new-tokens must be at least 1, not 0"),
    "negative seed": (["--seed", "-1"], "--seed must be between 0 and"),
    "no pairs": (["--rm-pairs", "0"], "--rm-pairs must be at least 1, not 0"),
    "pairs without a reward model": (["--scorer", "classifier", "--rm-pairs", "64"], "--rm-pairs needs --scorer both"),
    "unknown scorer": (["--scorer", "gold"], "argument --scorer: invalid choice: 'gold'"),
}


@pytest.mark.parametrize("case", REWARD_REFUSALS, ids=str)
def test_reward_scores_refuse_a_bad_value_in_one_line(case):
    args, message = REWARD_REFUSALS[case]
    assert message in refused("s04_reward_scores.py", *args)


def test_reward_scores_refuse_more_pairs_than_the_data_has(capsys):
    """Checked once the preference data is loaded, before any model: in this process, like the context check."""
    with pytest.raises(SystemExit) as exit_status:
        lecture_module("s04_reward_scores.py").main(["--rm-pairs", "3001"])
    error = capsys.readouterr().err
    assert exit_status.value.code == 2 and error.count("\n") == 1
    assert "--rm-pairs 3001 is more than the 3000 training pairs of the preferences data; use 3000 or less" in error


def test_reward_scores_refuse_a_prompt_beyond_the_context(capsys):
    """Checked after the LM is loaded, so in this process (a subprocess would load torch for one line)."""
    with pytest.raises(SystemExit) as exit_status:
        lecture_module("s04_reward_scores.py").main(["--prompt", "a " * 240, "--new-tokens", "30"])
    error = capsys.readouterr().err
    assert exit_status.value.code == 2 and error.count("\n") == 1
    assert "which with --new-tokens 30 exceeds the model's context of 256 tokens; use --new-tokens 15 or less" in error
