"""rl4lm.analysis.behaviour: bootstrap intervals, option confidences, self-similarity and answer distributions (session 6).

Every function is checked against an independent computation: the bootstrap against the exact distribution of the
resampled mean for tiny samples and against the normal and Wilson intervals for large ones, the paired bootstrap
against the variance of a paired difference, the rest against brute-force Python.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from rl4lm.analysis import behaviour
from rl4lm.analysis.calibration import expected_calibration_error
from rl4lm.lm.scoring import wilson_interval

Z_95 = 1.959963984540054


def test_bootstrap_indices_are_seeded_and_in_range():
    first = behaviour.bootstrap_indices(7, 50, seed=3)
    assert first.shape == (50, 7) and first.min() >= 0 and first.max() <= 6
    assert np.array_equal(first, behaviour.bootstrap_indices(7, 50, seed=3))
    assert not np.array_equal(first, behaviour.bootstrap_indices(7, 50, seed=4))


def test_bootstrap_interval_matches_the_exact_bootstrap_distribution_of_a_tiny_sample():
    values = np.array([0.0, 1.0, 5.0])
    # Every one of the 3^3 resamples is equally likely: the exact bootstrap distribution of the mean.
    exact = np.array([np.mean(values[list(rows)]) for rows in itertools.product(range(3), repeat=3)])
    estimate, low, high = behaviour.bootstrap_interval(values, n_resamples=200_000, confidence=0.8, seed=0)
    assert estimate == pytest.approx(2.0)
    # The 10% and 90% quantiles of the exact distribution (both fall inside a run of equal values, so no jump near them).
    assert low == pytest.approx(np.quantile(exact, 0.1), abs=1e-9)
    assert high == pytest.approx(np.quantile(exact, 0.9), abs=1e-9)


def test_bootstrap_interval_of_a_large_sample_is_the_normal_interval():
    values = np.random.default_rng(1).normal(3.0, 2.0, size=2000)
    estimate, low, high = behaviour.bootstrap_interval(values, n_resamples=4000, seed=0)
    half = Z_95 * values.std() / math.sqrt(len(values))  # the bootstrap's standard error uses the 1/n variance
    assert estimate == pytest.approx(values.mean())
    assert low == pytest.approx(values.mean() - half, abs=0.08 * half)
    assert high == pytest.approx(values.mean() + half, abs=0.08 * half)


def test_bootstrap_interval_of_an_accuracy_is_close_to_the_wilson_interval():
    correct = np.r_[np.ones(720), np.zeros(180)]  # 80% of 900 items
    estimate, low, high = behaviour.bootstrap_interval(correct, n_resamples=4000, seed=0)
    wilson_low, wilson_high = wilson_interval(720, 900)
    assert estimate == pytest.approx(0.8)
    assert low == pytest.approx(wilson_low, abs=0.006) and high == pytest.approx(wilson_high, abs=0.006)


def test_bootstrap_interval_takes_rows_and_a_statistic():
    rng = np.random.default_rng(0)
    confidences = rng.uniform(0.5, 1.0, size=300)
    correct = (rng.uniform(size=300) < confidences).astype(float)  # calibrated by construction
    rows = np.column_stack([confidences, correct])
    estimate, low, high = behaviour.bootstrap_interval(rows, lambda r: expected_calibration_error(r[:, 0], r[:, 1]),
                                                       n_resamples=300, seed=0)
    assert estimate == pytest.approx(expected_calibration_error(confidences, correct))
    assert 0 <= low <= high <= 1
    assert behaviour.bootstrap_interval(torch.tensor([1.0, 0.0, 1.0]), n_resamples=10)[0] == pytest.approx(2 / 3)


def test_paired_bootstrap_cancels_what_the_items_share():
    rng = np.random.default_rng(0)
    a = rng.normal(size=500)
    result = behaviour.paired_bootstrap_difference(a + 0.25, a, n_resamples=500)
    # Every resample draws the same items for both: the difference is exactly 0.25 in each, so the interval is a point.
    assert result["difference"] == pytest.approx(0.25)
    assert result["low"] == pytest.approx(0.25) and result["high"] == pytest.approx(0.25)
    assert result["share_positive"] == 1.0


def test_paired_bootstrap_of_two_accuracies_matches_the_variance_of_a_paired_difference():
    rng = np.random.default_rng(2)
    n = 1500
    a = (rng.uniform(size=n) < 0.7).astype(float)
    b = np.where(rng.uniform(size=n) < 0.15, 1 - a, a)  # b disagrees with a on about 15% of the items
    result = behaviour.paired_bootstrap_difference(a, b, n_resamples=4000, seed=0)
    d = a - b
    half = Z_95 * d.std() / math.sqrt(n)  # sd of the per-item differences: (p10 + p01 - (p10 - p01)^2) ** 0.5
    assert result["difference"] == pytest.approx(d.mean())
    assert result["low"] == pytest.approx(d.mean() - half, abs=0.1 * half)
    assert result["high"] == pytest.approx(d.mean() + half, abs=0.1 * half)
    unpaired = math.sqrt(a.var() / n + b.var() / n) * Z_95  # what two independent resamplings would give
    assert result["high"] - result["low"] < 0.6 * 2 * unpaired


def test_paired_bootstrap_refuses_different_items():
    with pytest.raises(ValueError, match="values_a has shape"):
        behaviour.paired_bootstrap_difference([1, 0, 1], [1, 0])


@pytest.mark.parametrize(("call", "match"), [
    (lambda: behaviour.bootstrap_interval([]), "values is empty"),
    (lambda: behaviour.bootstrap_interval([1.0, float("nan")]), "NaN"),
    (lambda: behaviour.bootstrap_interval(3.0), "single number"),
    (lambda: behaviour.bootstrap_interval(["a", "b"]), "list or array of numbers"),
    (lambda: behaviour.bootstrap_interval([1, 2], n_resamples=0), "n_resamples"),
    (lambda: behaviour.bootstrap_interval([1, 2], confidence=95), "confidence"),
    (lambda: behaviour.bootstrap_interval([[1, 2], [3, 4]]), "pass a statistic"),
    (lambda: behaviour.bootstrap_indices(0), "at least one item"),
])
def test_bootstrap_bad_input_is_one_sentence(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_option_probabilities_are_the_softmax_and_do_not_overflow():
    scores = torch.tensor([-3.0, -1.0, -2.5])
    assert np.allclose(behaviour.option_probabilities(scores), torch.softmax(scores.double(), 0).numpy())
    assert np.allclose(behaviour.option_probabilities([-1000.0, -1001.0]), [1 / (1 + math.exp(-1)), 1 / (1 + math.e)])
    with pytest.raises(ValueError, match="one score per option"):
        behaviour.option_probabilities([[1.0, 2.0]])


def test_answer_confidences_take_the_argmax_option_and_mark_it_right_or_wrong():
    scores = [torch.tensor([-1.0, -2.0]), torch.tensor([-4.0, -1.0, -3.0]), torch.tensor([-2.0, -2.0])]
    result = behaviour.answer_confidences(scores, labels=[0, 2, 1])
    assert result["prediction"].tolist() == [0, 1, 0]  # the tie goes to the first option
    assert result["correct"].tolist() == [1.0, 0.0, 0.0]
    expected = [torch.softmax(s.double(), 0).max().item() for s in scores]
    assert np.allclose(result["confidence"], expected) and result["confidence"][2] == pytest.approx(0.5)
    assert "correct" not in behaviour.answer_confidences(scores)
    with pytest.raises(ValueError, match="labels has 2 entries"):
        behaviour.answer_confidences(scores, labels=[0, 1])
    with pytest.raises(ValueError, match=r"labels\[1\] is 3"):
        behaviour.answer_confidences(scores, labels=[0, 3, 1])
    with pytest.raises(ValueError, match="non-empty list"):
        behaviour.answer_confidences([])


def brute_force_jaccard(a: list, b: list, n: int) -> float:
    """|A ∩ B| / |A ∪ B| of the n-gram sets, written out with loops."""
    grams_a, grams_b = [], []
    for tokens, grams in ((a, grams_a), (b, grams_b)):
        for i in range(len(tokens) - n + 1):
            if tuple(tokens[i:i + n]) not in grams:
                grams.append(tuple(tokens[i:i + n]))
    shared = [g for g in grams_a if g in grams_b]
    union = grams_a + [g for g in grams_b if g not in grams_a]
    return len(shared) / len(union) if union else 1.0


def test_ngram_jaccard_and_self_similarity_match_brute_force():
    rng = np.random.default_rng(0)
    samples = [rng.integers(0, 6, size=int(rng.integers(3, 12))).tolist() for _ in range(6)]
    for n in (1, 2, 3):
        pairs = [brute_force_jaccard(a, b, n) for a, b in itertools.combinations(samples, 2)]
        assert behaviour.self_similarity(samples, n) == pytest.approx(sum(pairs) / len(pairs))
        assert behaviour.ngram_jaccard(samples[0], samples[1], n) == pytest.approx(brute_force_jaccard(samples[0], samples[1], n))
    assert behaviour.ngram_jaccard("a b c".split(), "b c d".split(), 2) == pytest.approx(1 / 3)  # {bc} of {ab, bc, cd}


def test_self_similarity_is_one_for_copies_and_zero_for_disjoint_samples():
    assert behaviour.self_similarity([[1, 2, 3]] * 4) == 1.0
    assert behaviour.self_similarity([[1, 2, 3], [4, 5, 6], [7, 8, 9]]) == 0.0
    assert behaviour.self_similarity([[1], [2]], n=2) == 1.0  # no bigrams on either side: nothing tells them apart
    with pytest.raises(ValueError, match="at least two samples"):
        behaviour.self_similarity([[1, 2, 3]])
    with pytest.raises(ValueError, match="n is 0"):
        behaviour.self_similarity([[1, 2], [2, 3]], n=0)
    with pytest.raises(ValueError, match=r"token_lists\[1\] is a string"):  # a text's n-grams would be characters
        behaviour.self_similarity([["a", "good", "film"], "a good film"])
    with pytest.raises(ValueError, match="tokens is the string"):
        behaviour.ngram_jaccard("a good film", "a bad film")


def test_answer_distribution_entropy_and_mode_share():
    one = behaviour.answer_distribution(["yes"] * 5)
    assert (one["mode"], one["mode_share"], one["entropy_bits"], one["n_distinct"]) == ("yes", 1.0, 0.0, 1)
    even = behaviour.answer_distribution(["a", "b", "c", "d"] * 3)
    assert even["mode_share"] == pytest.approx(0.25) and even["entropy_bits"] == pytest.approx(2.0)
    skewed = behaviour.answer_distribution(["no", "yes", "no", "no"])
    p = np.array([0.75, 0.25])
    assert skewed["mode"] == "no" and skewed["entropy_bits"] == pytest.approx(float(-(p * np.log2(p)).sum()))
    assert behaviour.answer_distribution(["x", "y"])["mode"] == "x"  # ties: the answer seen first
    with pytest.raises(ValueError, match="non-empty list"):
        behaviour.answer_distribution([])
    with pytest.raises(ValueError, match="non-empty list"):
        behaviour.answer_distribution("yes")


@pytest.fixture(scope="module")
def tiny_lm():
    """The tiny profile's LM and tokenizer (built once per clone into the test cache)."""
    from rl4lm.profiles import load_model, load_tokenizer

    return load_model("lm"), load_tokenizer("lm")


def test_item_scores_are_score_options_per_item(tiny_lm):
    from rl4lm.lm.scoring import option_logprobs

    model, tokenizer = tiny_lm
    items = [{"context": "this comedy was", "options": ["wonderful .", "awful ."]},
             {"context": "i saw this drama", "options": ["last night", "yesterday", "once"]}]
    scores = behaviour.item_scores(model, tokenizer, items)
    assert [tuple(s.shape) for s in scores] == [(2,), (3,)]
    for item, score in zip(items, scores):
        assert torch.allclose(score, option_logprobs(model, tokenizer, item["context"], item["options"])[0])
    with pytest.raises(ValueError, match="items is empty"):
        behaviour.item_scores(model, tokenizer, [])


def test_sample_groups_groups_samples_by_prompt_and_is_seeded(tiny_lm):
    from rl4lm.lm.rollout import sample_rollout

    model, tokenizer = tiny_lm
    prompts = ["this comedy was", "what a boring"]
    first = behaviour.sample_groups(model, tokenizer, prompts, 3, 6, batch_size=4, seed=1)
    assert [len(group) for group in first["texts"]] == [3, 3] and [len(group) for group in first["token_ids"]] == [3, 3]
    assert first == behaviour.sample_groups(model, tokenizer, prompts, 3, 6, batch_size=4, seed=1)
    for ids, text in zip(first["token_ids"][1], first["texts"][1]):
        assert 1 <= len(ids) <= 6 and tokenizer.eos_token_id not in ids
        assert tokenizer.decode(ids, skip_special_tokens=True) == text
    # One batch: the same tokens as sample_rollout with the same seeded generator.
    whole = behaviour.sample_groups(model, tokenizer, prompts, 3, 6, batch_size=6, seed=1)
    rollout = sample_rollout(model, tokenizer, [p for p in prompts for _ in range(3)], 6, generator=torch.Generator().manual_seed(1))
    assert [text for group in whole["texts"] for text in group] == rollout.texts(tokenizer)
    with pytest.raises(ValueError, match="n_samples is 0"):
        behaviour.sample_groups(model, tokenizer, prompts, 0, 6)
    with pytest.raises(ValueError, match="non-empty list of strings"):
        behaviour.sample_groups(model, tokenizer, "this comedy was", 2, 6)


def test_answer_word_is_the_normalised_first_word():
    assert behaviour.answer_word(" Yes, it was.") == "yes"
    assert behaviour.answer_word("  no .") == "no"
    assert behaviour.answer_word(" . ,") == ""


def test_fit_temperature_recovers_the_temperature_that_generated_the_labels():
    rng = np.random.default_rng(0)
    true_t = 3.0
    scores = [rng.normal(0, 4, size=2) for _ in range(3000)]
    labels = [int(rng.uniform() > np.exp(s[0] / true_t) / np.exp(s / true_t).sum()) for s in scores]  # y ~ softmax(s / 3)
    fitted = behaviour.fit_temperature(scores, labels)
    assert fitted == pytest.approx(true_t, rel=0.15)
    # The same minimiser as a brute-force negative log-likelihood written with torch.
    grid = np.array([1.0, 2.0, 3.0, 4.0, 6.0])
    nll = [torch.nn.functional.cross_entropy(torch.tensor(np.array(scores)) / t, torch.tensor(labels)).item() for t in grid]
    assert behaviour.fit_temperature(scores, labels, grid) == grid[int(np.argmin(nll))]
    with pytest.raises(ValueError, match="labels has 1 entries"):
        behaviour.fit_temperature(scores[:2], [0])
    with pytest.raises(ValueError, match="must all be positive"):
        behaviour.fit_temperature(scores[:2], [0, 1], [0.0, 1.0])
    with pytest.raises(ValueError, match=r"score_lists\[1\] is empty; give at least one option"):
        behaviour.fit_temperature([[0.0, -1.0], []], [0, 0])
    with pytest.raises(ValueError, match=r"score_lists\[0\] has shape \(1, 2\)"):
        behaviour.fit_temperature([[[0.0, -1.0]]], [0])
    with pytest.raises(ValueError, match="scores is empty; give at least one option"):
        behaviour.option_probabilities([])
