"""Zero-shot multiple choice by log-probability (rl4lm.lm.scoring) and the ``multiple_choice`` data-set role."""
from __future__ import annotations

import math
import random

import pytest
import torch

from rl4lm import profiles
from rl4lm.assets import roles, tiny
from rl4lm.lm import scoring

CONTEXT = "this comedy was really wonderful . i loved the cast ."
OPTIONS = ["highly recommended .", "avoid it at all costs .", "a real treat for the whole family ."]


@pytest.fixture(scope="module", autouse=True)
def tiny_profile():
    """Run this module in the tiny profile."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RL4LM_PROFILE", "tiny")
        yield


@pytest.fixture(scope="module")
def lm(tiny_profile):
    """The tiny profile's tokenizer and language model."""
    return profiles.load_tokenizer("lm"), profiles.load_model("lm")


def manual_logprob(tokenizer, model, context: str, option: str) -> tuple[float, int]:
    """log P(option | context) from one forward pass over context + " " + option alone, summed by hand."""
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    option_ids = tokenizer(" " + option, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([context_ids + option_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)  # (seq, vocab)
    total = sum(logprobs[t - 1, ids[0, t]].item() for t in range(len(context_ids), ids.shape[1]))
    return total, len(option_ids)


def test_scores_equal_one_forward_pass_per_option(lm):
    tokenizer, model = lm
    scores = scoring.score_options(model, tokenizer, CONTEXT, OPTIONS)
    manual = [manual_logprob(tokenizer, model, CONTEXT, option)[0] for option in OPTIONS]
    assert scores.shape == (len(OPTIONS),)
    assert torch.allclose(scores, torch.tensor(manual), atol=1e-4), (scores, manual)


def test_batched_options_of_different_lengths_score_as_each_alone(lm):
    tokenizer, model = lm
    together = scoring.score_options(model, tokenizer, CONTEXT, OPTIONS)
    alone = torch.cat([scoring.score_options(model, tokenizer, CONTEXT, [option]) for option in OPTIONS])
    assert torch.allclose(together, alone, atol=1e-4), "padding must not change any option's score"


def test_normalisations_divide_by_tokens_and_characters(lm):
    tokenizer, model = lm
    logprobs, n_tokens = scoring.option_logprobs(model, tokenizer, CONTEXT, OPTIONS)
    assert n_tokens.tolist() == [manual_logprob(tokenizer, model, CONTEXT, option)[1] for option in OPTIONS]
    assert torch.allclose(scoring.score_options(model, tokenizer, CONTEXT, OPTIONS, "none"), logprobs)
    assert torch.allclose(scoring.score_options(model, tokenizer, CONTEXT, OPTIONS, "per_token"), logprobs / n_tokens)
    chars = torch.tensor([float(len(option)) for option in OPTIONS])
    assert torch.allclose(scoring.score_options(model, tokenizer, CONTEXT, OPTIONS, "per_char"), logprobs / chars)
    assert (logprobs < 0).all()


def test_option_is_tokenized_after_a_space_as_in_the_joined_text(lm):
    tokenizer, model = lm
    context = "review : what a clever comedy . sentiment :"
    for option in ["positive", "negative", "i would watch it again ."]:
        joined = tokenizer(f"{context} {option}", add_special_tokens=False)["input_ids"]
        alone = tokenizer(context, add_special_tokens=False)["input_ids"] + tokenizer(" " + option, add_special_tokens=False)["input_ids"]
        assert joined == alone, "byte-level BPE splits before the space, so no merge crosses the boundary"
    _, n_tokens = scoring.option_logprobs(model, tokenizer, context, ["positive"])
    assert n_tokens.tolist() == [1], "' positive' is one token; 'positive' without its space would be several"
    assert tokenizer.convert_ids_to_tokens(tokenizer(" positive", add_special_tokens=False)["input_ids"]) == ["Ġpositive"]


def test_an_empty_context_conditions_on_the_end_of_text_token(lm):
    tokenizer, model = lm
    scores = scoring.score_options(model, tokenizer, "", ["this comedy was dull .", "dull was comedy this ."])
    assert scores[0] > scores[1]


def test_a_context_longer_than_the_model_loses_its_beginning(lm):
    tokenizer, model = lm
    long_context = " ".join([CONTEXT] * 60)  # far beyond the tiny LM's 256 positions
    scores = scoring.score_options(model, tokenizer, long_context, OPTIONS)
    assert torch.isfinite(scores).all()


def test_wilson_interval_matches_the_formula_by_hand():
    z = 1.959963984540054
    p, n = 0.8, 10  # 8 of 10: the textbook interval (0.490, 0.943)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low, high = scoring.wilson_interval(8, 10)
    assert (low, high) == pytest.approx((centre - half, centre + half))
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)
    assert scoring.wilson_interval(0, 20)[0] == 0.0 and scoring.wilson_interval(20, 20)[1] == pytest.approx(1.0)
    assert scoring.wilson_interval(0, 20)[1] > 0, "no correct answer out of 20 still leaves room above 0"


def test_accuracy_per_task_matches_a_hand_count(lm):
    tokenizer, model = lm
    items = tiny.multiple_choice_items(random.Random(5), 4)
    results = scoring.multiple_choice_accuracy(model, tokenizer, items, "per_token")
    assert list(results) == ["copa", "rte", "boolq"]
    for task, result in results.items():
        mine = [it for it in items if it["task"] == task]
        correct = sum(int(scoring.score_options(model, tokenizer, it["context"], it["options"], "per_token").argmax()) == it["label"]
                      for it in mine)
        assert (result["correct"], result["n"], result["accuracy"]) == (correct, len(mine), correct / len(mine))
        assert (result["ci_low"], result["ci_high"]) == scoring.wilson_interval(correct, len(mine))
        assert result["chance"] == pytest.approx(0.5)


def test_tiny_multiple_choice_role_has_the_common_schema():
    data = profiles.load_dataset("multiple_choice")
    assert set(data) == {"train", "test"}
    for split, part in data.items():
        assert part.column_names == ["task", "context", "options", "label"], split
        assert {task: part["task"].count(task) for task in set(part["task"])} == {"copa": 300, "rte": 300, "boolq": 300}
        assert all(0 <= row["label"] < len(row["options"]) and all(row["options"]) for row in part)
    test = data["test"]
    assert all(row["options"] == ["true", "false"] for row in test if row["task"] == "rte")
    assert all(row["options"] == ["no", "yes"] for row in test if row["task"] == "boolq")
    assert 0.35 < sum(test["label"]) / test.num_rows < 0.65, "labels are balanced, so chance is 50% on every task"


def test_tiny_items_are_built_deterministically_from_their_own_seed():
    first = tiny.multiple_choice_items(random.Random(tiny.MULTIPLE_CHOICE_SEED), tiny.MULTIPLE_CHOICE_ITEMS)
    again = tiny.multiple_choice_items(random.Random(tiny.MULTIPLE_CHOICE_SEED), tiny.MULTIPLE_CHOICE_ITEMS)
    assert first == again
    assert first == profiles.load_dataset("multiple_choice", split="train").to_list()


def test_tiny_lm_picks_the_closing_sentence_above_chance_but_not_always(lm):
    tokenizer, model = lm
    copa = profiles.load_dataset("multiple_choice", split="test").filter(lambda row: row["task"] == "copa")
    result = scoring.multiple_choice_accuracy(model, tokenizer, copa.select(range(150)), "none")["copa"]
    assert result["ci_low"] > 0.6 and result["accuracy"] < 1.0, result


def test_hub_rows_become_items_of_the_same_schema():
    copa = roles.copa_item({"premise": "The man broke his toe.", "choice1": "He dropped a hammer on his foot.",
                            "choice2": "He got a hole in his sock.", "question": "cause", "idx": 0, "label": 0})
    assert copa == {"task": "copa", "context": "The man broke his toe because",
                    "options": ["he dropped a hammer on his foot.", "he got a hole in his sock."], "label": 0}
    rte = roles.rte_item({"premise": "It rained all day.", "hypothesis": "The ground is wet.", "idx": 3, "label": 1})
    assert rte["context"] == "It rained all day.\nQuestion: The ground is wet. True or False?\nAnswer:"
    assert (rte["options"], rte["label"]) == (["True", "False"], 1)
    boolq = roles.boolq_item({"question": "is the sky blue", "passage": "The sky is blue.", "idx": 1, "label": 1})
    assert boolq["context"] == "The sky is blue.\nQuestion: is the sky blue?\nAnswer:"
    assert boolq["options"][boolq["label"]] == "yes"
    assert set(roles.role("multiple_choice").tasks) == {"copa", "rte", "boolq"}


@pytest.mark.parametrize("call, argument", [
    (lambda m, t: scoring.score_options(m, t, CONTEXT, []), "options"),
    (lambda m, t: scoring.score_options(m, t, CONTEXT, ["highly recommended .", ""]), "options"),
    (lambda m, t: scoring.score_options(m, t, CONTEXT, "highly recommended ."), "options"),
    (lambda m, t: scoring.score_options(m, t, CONTEXT, OPTIONS, normalize="mean"), "normalize"),
    (lambda m, t: scoring.option_logprobs(m, t, CONTEXT + " ", OPTIONS), "context"),
    (lambda m, t: scoring.multiple_choice_accuracy(m, t, [], "none"), "items"),
    (lambda m, t: scoring.multiple_choice_accuracy(m, t, [{"task": "x", "context": CONTEXT, "options": OPTIONS, "label": 3}], "none"),
     "items"),
    (lambda m, t: scoring.multiple_choice_accuracy(m, t, [{"context": CONTEXT}], "none"), "items"),
    (lambda m, t: scoring.multiple_choice_accuracy(m, t, [], "sum"), "normalize"),
    (lambda m, t: scoring.wilson_interval(3, 0), "n"),
])
def test_bad_input_is_one_sentence_naming_the_argument(lm, call, argument):
    tokenizer, model = lm
    with pytest.raises(ValueError) as info:
        call(model, tokenizer)
    message = str(info.value)
    assert message.startswith(argument) or f" {argument}" in message, message
    assert message.count(". ") == 0 and "\n" not in message, message
