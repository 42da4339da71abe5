"""Reward over-optimisation (rl4lm.analysis.overoptimisation): n-gram coverage by hand, concordance against Kendall's tau,
Gao et al.'s RL curve recovered by the fit, a short PPO run whose gold is recorded batch by batch, bad input in one sentence."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from helpers import one_sentence
from rl4lm import profiles
from rl4lm.analysis.overoptimisation import concordance, corpus_ngrams, fit_gao_rl, gao_rl_gold, ngram_coverage, text_words, train_ppo_with_gold
from rl4lm.rlhf.ppo_lm import PPOLMConfig

CORPUS = ["this film was wonderful .", "I loved the plot!"]


def test_text_words_splits_words_and_punctuation():
    assert text_words("I loved the plot!") == ["i", "loved", "the", "plot", "!"]
    assert text_words("  Don't   stop.") == ["don't", "stop", "."]


def test_ngram_coverage_by_hand():
    corpus = corpus_ngrams(CORPUS, n=2)
    assert ("loved", "the") in corpus and ("wonderful", ".") in corpus and len(corpus) == 8
    got = ngram_coverage(["this film was wonderful .", "this film loved the plot", "plot plot plot", "wonderful"], corpus, n=2)
    # 4 of 4 bigrams; this film, film loved (no), loved the, the plot: 3 of 4; none of 2; no bigram at all: 0
    assert got.dtype == torch.float32 and torch.allclose(got, torch.tensor([1.0, 0.75, 0.0, 0.0]))


def test_concordance_is_one_plus_kendall_tau_over_two():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(30, generator=g), torch.randn(30, generator=g)
    pairs = [(i, j) for i in range(30) for j in range(i + 1, 30)]
    tau = sum(math.copysign(1, (a[i] - a[j]) * (b[i] - b[j])) for i, j in pairs) / len(pairs)  # no ties in random normals
    assert concordance(a, b) == pytest.approx((1 + tau) / 2)
    assert concordance(a, a) == 1.0 and concordance(a, -a) == 0.0
    assert concordance([1.0, 1.0, 2.0], [1.0, 2.0, 3.0]) == pytest.approx((0.5 + 1 + 1) / 3)  # a tie in a counts half
    assert concordance([3.0, 2.0, 1.0], [1.0, 1.0, 2.0]) == 0.0  # the tie in b is left out


def test_fit_recovers_gao_curve_and_its_peak():
    d = torch.linspace(0.2, 8.0, 40)
    gain = gao_rl_gold(d, 0.5, 0.25)
    fit = fit_gao_rl(d, gain)
    assert fit["alpha"] == pytest.approx(0.5, abs=1e-9) and fit["beta"] == pytest.approx(0.25, abs=1e-9)
    assert fit["r2"] == pytest.approx(1.0) and fit["peak_d"] == pytest.approx(math.exp(0.5 / 0.25 - 1))
    slope = (gao_rl_gold(fit["peak_d"] + 1e-4, 0.5, 0.25) - gao_rl_gold(fit["peak_d"] - 1e-4, 0.5, 0.25)) / 2e-4
    assert abs(slope.item()) < 1e-6  # the derivative vanishes at the peak
    assert gao_rl_gold(torch.tensor([0.0]), 1.0, 1.0).item() == 0.0  # R(0) = 0 by definition
    assert math.isinf(fit_gao_rl(d, 0.3 * d)["peak_d"])  # a gain that only rises has no peak


@pytest.mark.parametrize("call, fragment", [
    (lambda: corpus_ngrams([], 3), "texts is empty"),
    (lambda: corpus_ngrams(CORPUS, 0), "n should be a whole number"),
    (lambda: corpus_ngrams(["too short"], 3), "no text in texts has 3 words"),
    (lambda: ngram_coverage("this film", corpus_ngrams(CORPUS, 2), 2), "not one string"),
    (lambda: ngram_coverage(["this film"], corpus_ngrams(CORPUS, 2), 3), "corpus holds 2-grams but n = 3"),
    (lambda: ngram_coverage(["a", 3], corpus_ngrams(CORPUS, 2), 2), "texts[1] is a int"),
    (lambda: concordance([1.0, 2.0], [1.0, 2.0, 3.0]), "scores_a has 2 scores but scores_b has 3"),
    (lambda: concordance([1.0, 2.0], [5.0, 5.0]), "ties every pair"),
    (lambda: fit_gao_rl([0.0, 1.0, 2.0], [0.0, 0.1, 0.2]), "above 0"),
    (lambda: gao_rl_gold([-1.0], 1.0, 1.0), "cannot be negative"),
])
def test_bad_input_is_one_sentence(call, fragment):
    with pytest.raises(ValueError) as error:
        call()
    assert fragment in one_sentence(error.value)


def test_train_ppo_with_gold_records_the_gold_of_every_batch():
    profiles.use_tiny_threads()
    tokenizer, lm = profiles.load_tokenizer("lm"), profiles.load_model("lm")
    seen = []

    def proxy(texts):
        return torch.tensor([float(len(t)) for t in texts]) / 100  # longer is better

    def gold(texts):
        seen.append(list(texts))
        return torch.tensor([float(t.count(".")) for t in texts])

    config = PPOLMConfig(steps=3, batch_size=4, max_new_tokens=6, num_minibatches=1, ppo_epochs=1, seed=0)
    prompts = ["this romance was", "i saw this", "what a"]
    run = train_ppo_with_gold(copy.deepcopy(lm), tokenizer, proxy, gold, prompts, config, reference=lm, eval_prompts=prompts[:2])
    assert len(seen) == config.steps + 2 and run["batch_texts"] == seen[1:-1]
    for step in range(config.steps):
        texts = run["batch_texts"][step]
        assert run["gold_scores"][step] == [float(t.count(".")) for t in texts]
        assert run["history"]["gold_mean"][step] == pytest.approx(sum(run["gold_scores"][step]) / config.batch_size)
        assert run["history"]["reward_mean"][step] == pytest.approx(sum(run["proxy_scores"][step]) / config.batch_size)
    assert run["gold_before"] == [float(t.count(".")) for t in run["samples_before"]]
    assert run["gold_after"] == [float(t.count(".")) for t in run["samples_after"]]
    with pytest.raises(ValueError) as error:
        train_ppo_with_gold(copy.deepcopy(lm), tokenizer, proxy, lambda texts: torch.zeros(1), prompts, config, reference=lm)
    assert "gold_fn returned 1 scores for 3 texts" in one_sentence(error.value)
