"""The tiny profile: deterministic assets, loaded through from_pretrained, that behave like their corpus."""
from __future__ import annotations

import random

import pytest
import torch

from rl4lm import profiles
from rl4lm.assets import tiny


@pytest.fixture(scope="module", autouse=True)
def tiny_profile():
    """Run this module in the tiny profile (assets built once, cached)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("RL4LM_PROFILE", "tiny")
    tiny.build_all()
    yield
    mp.undo()


def test_grammar_is_deterministic():
    a = [tiny.review(random.Random(3)) for _ in range(3)]
    b = [tiny.review(random.Random(3)) for _ in range(3)]
    assert a == b


def test_score_controls_sentiment():
    rng = random.Random(0)
    good = " ".join(tiny.review(rng, 10)["text"] for _ in range(50))
    bad = " ".join(tiny.review(rng, 1)["text"] for _ in range(50))
    count = lambda text, polarity: sum(text.split().count(w) for w in tiny.ADJECTIVES[polarity])
    assert count(good, 1) > 5 * count(good, 0) and count(bad, 0) > 5 * count(bad, 1)


def test_lm_training_is_deterministic(tmp_path):
    texts = [tiny.review(random.Random(i))["text"] for i in range(200)]
    tokenizer = tiny.build_tokenizer(texts, tmp_path / "tok")
    torch.manual_seed(0)
    first = tiny.train_lm(texts, tokenizer, tmp_path / "a", steps=3, batch=4)
    torch.manual_seed(0)
    second = tiny.train_lm(texts, tokenizer, tmp_path / "b", steps=3, batch=4)
    assert first == second


def test_assets_load_through_from_pretrained_and_generate_corpus_like_text():
    tokenizer, model = profiles.load_tokenizer("lm"), profiles.load_model("lm")
    torch.manual_seed(0)
    ids = tokenizer(["this comedy was"] * 8, return_tensors="pt")
    out = model.generate(**ids, do_sample=True, max_new_tokens=30, pad_token_id=tokenizer.pad_token_id)
    texts = tokenizer.batch_decode(out, skip_special_tokens=True)
    vocabulary = set(" ".join(tiny.review(random.Random(i))["text"] for i in range(2000)).split())
    words = " ".join(texts).split()
    known = sum(w in vocabulary for w in words) / len(words)
    assert known > 0.95, f"only {known:.0%} of sampled words are corpus words: {texts[:2]}"
    assert all(" ." in t for t in texts), "samples should contain sentences"


def test_classifier_separates_sentiment():
    tokenizer, model = profiles.load_tokenizer("sentiment_classifier"), profiles.load_model("sentiment_classifier")
    test = profiles.load_dataset("reviews", split="test")
    enc = tokenizer(list(test["text"]), padding=True, return_tensors="pt")
    with torch.no_grad():
        predicted = model(**enc).logits.argmax(-1)
    accuracy = (predicted == torch.tensor(list(test["label"]))).float().mean().item()
    assert accuracy > 0.85, f"tiny sentiment classifier accuracy {accuracy:.2f}"


def test_datasets_have_the_documented_columns():
    assert {"text", "label", "score", "genre"} <= set(profiles.load_dataset("reviews", split="train").column_names)
    assert {"context", "question", "answer"} <= set(profiles.load_dataset("qa", split="train").column_names)
    prefs = profiles.load_dataset("preferences", split="train")
    assert {"prompt", "chosen", "rejected"} <= set(prefs.column_names)
    assert all(c > r for c, r in zip(prefs["score_chosen"][:100], prefs["score_rejected"][:100]))
