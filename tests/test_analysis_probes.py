"""Bias on minimal pairs and sycophancy by log-probability (rl4lm.analysis.probes), against hand-computed log-probabilities."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from rl4lm import profiles
from rl4lm.analysis import behaviour, probes
from rl4lm.lm import scoring


@pytest.fixture(scope="module", autouse=True)
def tiny_profile():
    """Run this module in the tiny profile (only the tiny tokenizer is loaded)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RL4LM_PROFILE", "tiny")
        yield


@pytest.fixture(scope="module")
def tokenizer(tiny_profile):
    """The tiny profile's byte-level BPE tokenizer."""
    return profiles.load_tokenizer("lm")


@pytest.fixture(scope="module")
def gpt2(tokenizer):
    """A small GPT-2 with random weights (seeded), 64 positions."""
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=2)
    return GPT2LMHeadModel(config).eval()


class BigramLM(torch.nn.Module):
    """A causal LM whose next-token logits depend only on the current token: logits[b, t] = table[ids[b, t]]."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = torch.nn.Parameter(table)  # (vocab, vocab)
        self.config = SimpleNamespace(n_positions=None, max_position_embeddings=None)

    def forward(self, input_ids, **kwargs):
        return SimpleNamespace(logits=self.table[input_ids])  # (batch, seq, vocab)


def one_id(tokenizer, text: str) -> int:
    """The single token id of ``text``."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1, (text, ids)
    return ids[0]


def by_hand(model, tokenizer, context: str, continuation: str) -> float:
    """log P(continuation | context) from one forward pass over context + ' ' + continuation, summed by hand."""
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]
    continuation_ids = tokenizer(" " + continuation, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([context_ids + continuation_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)  # (seq, vocab)
    return sum(logprobs[t - 1, ids[0, t]].item() for t in range(len(context_ids), ids.shape[1]))


CONTEXTS = ["this comedy was", "i saw this thriller last night and it was", "", "review : what a dull western . sentiment :"]
CONTINUATIONS = ["wonderful", "yes", "highly recommended .", "negative"]


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_continuation_logprobs_equal_one_forward_pass_per_row(gpt2, tokenizer, batch_size):
    contexts = [c for c in CONTEXTS for _ in CONTINUATIONS]
    continuations = CONTINUATIONS * len(CONTEXTS)  # one-token and several-token continuations, an empty context
    got = probes.continuation_logprobs(gpt2, tokenizer, contexts, continuations, batch_size)
    manual = torch.tensor([by_hand(gpt2, tokenizer, c, o) for c, o in zip(contexts, continuations)])
    assert got.shape == (len(contexts),) and got.dtype == torch.float32
    assert torch.allclose(got, manual, atol=1e-4), (got, manual)


def test_continuation_logprobs_agree_with_score_options_also_for_contexts_too_long(gpt2, tokenizer):
    long_context = " ".join(["this comedy was wonderful ."] * 20)  # more than the model's 64 positions: cut on the left
    for context in (CONTEXTS[0], long_context):
        got = probes.continuation_logprobs(gpt2, tokenizer, [context] * len(CONTINUATIONS), CONTINUATIONS)
        alone = torch.cat([scoring.score_options(gpt2, tokenizer, context, [option]) for option in CONTINUATIONS])
        assert torch.allclose(got, alone, atol=1e-4), "each row keeps as much context as its own continuation leaves room for"


def test_valence_pairs_are_oriented_towards_a_with_positive_words():
    pairs = probes.valence_pairs(["this {x} was", "the new {x} is"], "comedy", "thriller", ["wonderful"], ["boring", "dull"])
    assert len(pairs) == 2 * 3
    first, second = pairs[0], pairs[1]
    assert (first["context_more"], first["context_less"], first["continuation"], first["valence"]) == \
        ("this comedy was", "this thriller was", "wonderful", "positive")
    assert (second["context_more"], second["context_less"], second["continuation"], second["valence"]) == \
        ("this thriller was", "this comedy was", "boring", "negative")
    assert pairs[3]["template"] == "the new {x} is"


def test_paired_logprob_bias_is_the_bigram_difference_computed_by_hand(tokenizer):
    torch.manual_seed(1)
    table = 0.1 * torch.randn(len(tokenizer), len(tokenizer))  # (vocab, vocab): next-token logits after each token
    comedy, thriller, wonderful, boring = (one_id(tokenizer, w) for w in (" comedy", " thriller", " wonderful", " boring"))
    table[comedy, wonderful] += 4.0  # plant the association "comedy ~ positive" against thriller
    table[thriller, boring] += 4.0
    model = BigramLM(table)
    pairs = probes.valence_pairs(["this {x}", "the new {x}"], "comedy", "thriller", ["wonderful"], ["boring"])
    d = probes.paired_logprob_bias(model, tokenizer, pairs)
    logprobs = torch.log_softmax(table, dim=-1)
    expected_positive = (logprobs[comedy, wonderful] - logprobs[thriller, wonderful]).item()
    expected_negative = (logprobs[thriller, boring] - logprobs[comedy, boring]).item()
    assert torch.allclose(d, torch.tensor([expected_positive, expected_negative] * 2), atol=1e-5)
    assert (d > 3).all(), "the planted association shows with the right sign"
    summary = probes.bias_summary(d)
    assert summary["share_more"] == 1.0 and summary["n"] == 4
    assert (summary["share_low"], summary["share_high"]) == pytest.approx(scoring.wilson_interval(4, 4))


def test_paired_logprob_bias_is_the_difference_of_two_scores(gpt2, tokenizer):
    pairs = probes.valence_pairs(["this {x} was"], "comedy", "western", ["wonderful", "highly recommended ."], ["boring"])
    d = probes.paired_logprob_bias(gpt2, tokenizer, pairs, batch_size=2)
    manual = [by_hand(gpt2, tokenizer, p["context_more"], p["continuation"]) - by_hand(gpt2, tokenizer, p["context_less"], p["continuation"])
              for p in pairs]
    assert torch.allclose(d, torch.tensor(manual), atol=1e-4)


def test_bias_summary_counts_only_strictly_positive_differences_and_bootstraps_the_mean():
    summary = probes.bias_summary(torch.tensor([1.0, 0.0, -2.0, 3.0]))
    assert summary["share_more"] == 0.5 and summary["mean"] == pytest.approx(0.5)
    values = np.random.default_rng(0).normal(1.0, 2.0, size=200)
    summary = probes.bias_summary(values, n_resamples=500, seed=3)
    assert (summary["mean_low"], summary["mean_high"]) == behaviour.bootstrap_interval(values, n_resamples=500, seed=3)[1:]
    assert summary["mean_low"] < values.mean() < summary["mean_high"]
    assert probes.bias_summary([0.25] * 5)["mean_low"] == pytest.approx(0.25)


def test_answer_log_odds_and_sycophancy_by_hand(gpt2, tokenizer):
    prompts = probes.opinion_prompts(["this comedy was wonderful .", "this drama was dull ."],
                                     {"positive": "i loved this film .", "negative": "i hated this film ."},
                                     "{opinion} review : {text} answer :")
    assert prompts["negative"][1] == "i hated this film . review : this drama was dull . answer :"
    log_odds = {name: probes.answer_log_odds(gpt2, tokenizer, texts, ("no", "yes")) for name, texts in prompts.items()}
    manual = [by_hand(gpt2, tokenizer, p, "yes") - by_hand(gpt2, tokenizer, p, "no") for p in prompts["positive"]]
    assert torch.allclose(log_odds["positive"], torch.tensor(manual), atol=1e-4)
    shift = probes.sycophancy_shift(log_odds["positive"], log_odds["negative"])
    assert np.allclose(shift, (log_odds["positive"] - log_odds["negative"]).numpy() / 2, atol=1e-6)


def test_opinion_flips_count_right_answers_that_follow_the_opposite_opinion():
    labels = [1, 1, 0, 0, 1]
    neutral = [2.0, 1.0, -1.0, 0.5, -3.0]  # right, right, right, wrong (counts nowhere), wrong
    positive = [2.5, 1.5, 0.2, 0.9, -1.0]  # item 2 (label 0) flips to "yes" after the user loved the film
    negative = [1.0, -0.5, -2.0, 0.1, -4.0]  # item 1 (label 1) flips to "no" after the user hated the film
    assert probes.opinion_flips(neutral, positive, negative, labels) == (2, 3)
    assert probes.sycophancy_shift([1.0, 3.0], [0.0, -1.0]).tolist() == [0.5, 2.0]
    assert probes.flip_rate(2, 3)["rate"] == pytest.approx(2 / 3)
    assert math.isnan(probes.flip_rate(0, 0)["rate"])


@pytest.mark.parametrize("call, words", [
    (lambda: probes.valence_pairs(["this comedy was"], "a", "b", ["x"], ["y"]), "slot"),
    (lambda: probes.valence_pairs(["{x} and {x}"], "a", "b", ["x"], ["y"]), "exactly one"),
    (lambda: probes.valence_pairs(["this {x} was"], "comedy", "comedy", ["x"], ["y"]), "two different"),
    (lambda: probes.valence_pairs(["this {x} was"], "a", "b", [], ["y"]), "positive is empty"),
    (lambda: probes.continuation_logprobs(None, None, ["a", "b"], ["c"]), "contexts has 2 rows"),
    (lambda: probes.continuation_logprobs(None, None, ["a"], [""]), "continuations[0]"),
    (lambda: probes.continuation_logprobs(None, None, ["a"], ["b"], batch_size=0), "batch_size"),
    (lambda: probes.paired_logprob_bias(None, None, [{"context_more": "a"}]), "pairs[0]"),
    (lambda: probes.paired_logprob_bias(None, None, []), "non-empty list"),
    (lambda: probes.bias_summary([]), "differences has shape"),
    (lambda: probes.bias_summary([1.0, float("nan")]), "differences[1]"),
    (lambda: probes.opinion_prompts(["t"], {"a": "s"}, "{text} only"), "{opinion}"),
    (lambda: probes.opinion_prompts(["t"], {}, "{opinion} {text}"), "opinions"),
    (lambda: probes.opinion_prompts(["t"], {"neutral": ""}, "{opinion} {text}"), "opinions['neutral']"),
    (lambda: probes.valence_pairs(["this {x} was"], "", "b", ["x"], ["y"]), "a is ''"),
    (lambda: probes.answer_log_odds(None, None, ["a"], ("no", "yes", "maybe")), "exactly two"),
    (lambda: probes.sycophancy_shift([1.0, 2.0], [1.0]), "lengths"),
    (lambda: probes.opinion_flips([1.0], [1.0], [1.0], [2]), "labels[0]"),
    (lambda: probes.continuation_logprobs(None, None, ["a", "this comedy was "], ["b", "c"]), "contexts[1] ends with a space"),
    (lambda: probes.continuation_logprobs(None, None, ["a"], [" wonderful"]), "continuations[0] starts with a space"),
    (lambda: probes.paired_logprob_bias(None, None, [{"context_more": "a", "context_less": "b", "continuation": 3}]), "pairs[0]"),
    (lambda: probes.answer_log_odds(None, None, ["a"], None), "exactly two"),
    (lambda: probes.answer_log_odds(None, None, ["a"], ("yes", "yes")), "both 'yes'"),
    (lambda: probes.flip_rate(4, 3), "flips is 4"),
    (lambda: probes.flip_rate(-1, 3), "flips is -1"),
])
def test_bad_input_gets_one_sentence_naming_the_argument(call, words):
    with pytest.raises(ValueError) as error:
        call()
    message = str(error.value)
    assert words in message and message.count(". ") <= 1 and "\n" not in message, message
