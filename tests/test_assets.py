"""The tiny assets: built once, atomically and deterministically, checked against a manifest, loaded by role."""
from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from helpers import one_sentence
from rl4lm import profiles
from rl4lm.assets import pipeline, roles, tiny


@pytest.fixture(scope="module")
def first_build():
    """Build the tiny assets as a first use does (a fresh process); its output, or None if they existed already."""
    if tiny.is_complete(tiny.root()):
        return None
    return subprocess.run([sys.executable, "-m", "rl4lm.assets.tiny"], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, RL4LM_PROFILE="tiny"))


@pytest.fixture(scope="module", autouse=True)
def tiny_profile(first_build):
    """Run this module in the tiny profile, with the assets built."""
    mp = pytest.MonkeyPatch()
    mp.setenv("RL4LM_PROFILE", "tiny")
    tiny.build_all()
    yield
    mp.undo()


@pytest.fixture
def cache_copy(tmp_path, monkeypatch):
    """A copy of the complete tiny build in a fresh cache folder, which RL4LM_CACHE now names; its asset folder."""
    copy = tmp_path / "cache" / tiny.root().name
    shutil.copytree(tiny.root(), copy)
    monkeypatch.setenv("RL4LM_CACHE", str(tmp_path / "cache"))
    return copy


def interrupt_build(cache, after: str, *args: str) -> str:
    """Start ``python -m rl4lm.assets.tiny`` on ``cache``, kill it (SIGKILL) once it printed ``after``; its output."""
    env = dict(os.environ, RL4LM_CACHE=str(cache), RL4LM_PROFILE="tiny", PYTHONUNBUFFERED="1")
    process = subprocess.Popen([sys.executable, "-m", "rl4lm.assets.tiny", *args], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    printed, deadline = "", time.monotonic() + 300
    while after not in printed and time.monotonic() < deadline:
        char = process.stdout.read(1)
        if not char:
            break
        printed += char
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert after in printed, printed
    return printed


def test_first_use_says_what_it_builds_and_hides_library_noise(first_build):
    if first_build is None:
        pytest.skip("the tiny assets existed before this test run; a fresh clone's `make test` builds them here")
    assert first_build.returncode == 0, first_build.stderr[-2000:]
    assert "Building the tiny profile's models and data sets" in first_build.stdout
    assert "about two minutes" in first_build.stdout and "done in" in first_build.stdout
    assert first_build.stderr.strip() == "", f"library noise during the build: {first_build.stderr[:500]}"
    assert "it/s]" not in first_build.stdout, "progress bars of the libraries leaked into the build's output"


def test_interrupted_first_build_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    printed = interrupt_build(tmp_path, after="language model")
    assert printed.startswith("Building the tiny profile's models and data sets")
    monkeypatch.setenv("RL4LM_CACHE", str(tmp_path))
    assert not tiny.is_complete(tiny.root()) and not tiny.root().exists()
    assert list(tmp_path.glob(f"{tiny.root().name}.partial-*")), "the unfinished build stays in its temporary folder"


def test_interrupted_forced_rebuild_keeps_the_complete_set(cache_copy):
    interrupt_build(cache_copy.parent, "tokenizer", "--force")  # the new data sets are written by now
    tiny.verify(cache_copy)
    assert profiles.load_dataset("reviews", split="train").num_rows == 12000


@pytest.mark.parametrize("damage", ["truncated weights", "missing tokenizer file", "garbage jsonl line"])
def test_damaged_file_is_named_with_the_rebuild_command(cache_copy, damage):
    path = {"truncated weights": cache_copy / "lm" / "model.safetensors",
            "missing tokenizer file": cache_copy / "lm" / "tokenizer.json",
            "garbage jsonl line": cache_copy / "reviews" / "train.jsonl"}[damage]
    if damage == "truncated weights":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "missing tokenizer file":
        path.unlink()
    else:
        with path.open("a") as f:
            f.write("{not json\n")
    load = profiles.load_dataset if damage == "garbage jsonl line" else profiles.load_model
    with pytest.raises(profiles.ProfileError) as info:
        load("reviews" if damage == "garbage jsonl line" else "lm")
    text = one_sentence(info.value)
    assert str(path.relative_to(cache_copy)) in text and "python -m rl4lm.assets.tiny --force" in text
    assert "internet" not in text and "hub" not in text


def test_complete_cache_in_a_read_only_folder_is_used_as_it_is(cache_copy, monkeypatch):
    def refuse():
        raise profiles.ProfileError("read-only")
    monkeypatch.setattr(tiny, "writable_cache_dir", refuse)  # what a read-only folder does to the build's first step
    assert profiles.load_dataset("qa", split="test").num_rows == 300
    assert profiles.load_tokenizer("lm").eos_token == tiny.EOS
    shutil.rmtree(cache_copy)
    with pytest.raises(profiles.ProfileError, match="read-only"):
        profiles.load_model("lm")  # building is the one thing that needs write access


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_complete_cache_in_a_read_only_folder_as_an_ordinary_user(cache_copy):
    for folder in [cache_copy.parent, *[p for p in cache_copy.rglob("*") if p.is_dir()], cache_copy]:
        folder.chmod(0o555)
    try:
        assert profiles.load_model("lm") is not None
    finally:
        for folder in [cache_copy.parent, cache_copy, *[p for p in cache_copy.rglob("*") if p.is_dir()]]:
            folder.chmod(0o755)


THREADS_PROBE = """
import hashlib, random, sys, tempfile, pathlib, torch
from rl4lm.assets import tiny
texts = [tiny.review(random.Random(i))["text"] for i in range(300)]
out = pathlib.Path(tempfile.mkdtemp())
with tiny.build_settings():
    torch.manual_seed(0)
    tiny.train_lm(texts, tiny.build_tokenizer(texts, out / "tok"), out / "lm", steps=30, batch=16)
print(hashlib.sha256((out / "lm" / "model.safetensors").read_bytes()).hexdigest())
"""


def test_build_gives_the_same_weights_whatever_the_thread_settings():
    digests = {threads: subprocess.run([sys.executable, "-c", THREADS_PROBE], capture_output=True, text=True, timeout=300,
                                       env=dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)).stdout.strip()
               for threads in ("1", "2", "3")}
    assert len(set(digests.values())) == 1 and all(digests.values()), digests
    manifest = tiny.json.loads((tiny.root() / tiny.MANIFEST).read_text())
    assert manifest["build"]["torch_threads"] == tiny.BUILD_THREADS


def test_every_role_has_a_tiny_folder():
    for role in roles.ROLES.values():
        assert (tiny.root() / role.tiny_folder).is_dir(), role.name


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


def test_multiple_choice_items_leave_the_language_models_pre_training_texts_unchanged(tmp_path, monkeypatch):
    with_items = tiny.build_datasets(tmp_path / "a", random.Random(tiny.SEED))
    monkeypatch.setattr(tiny, "multiple_choice_items", lambda rng, n: [])
    without_items = tiny.build_datasets(tmp_path / "b", random.Random(tiny.SEED))
    assert with_items == without_items, "the items must draw from their own generator, not the build's"
    rows = [json.loads(line) for line in (tmp_path / "a" / "multiple_choice" / "test.jsonl").read_text().splitlines()]
    assert len(rows) == 3 * tiny.MULTIPLE_CHOICE_ITEMS and set(rows[0]) == {"task", "context", "options", "label"}


def pipeline_facts() -> dict:
    """The facts the build recorded about each stage of the post-training pipeline (rl4lm.assets.pipeline)."""
    return json.loads((tiny.root() / tiny.MANIFEST).read_text())["build"]["pipeline"]


def test_pipeline_roles_load_in_tiny_as_the_lms_descendants():
    assert roles.role("pipeline_base").tiny_folder == roles.role("lm").tiny_folder, "the base stage is the tiny LM itself"
    expected = profiles.load_tokenizer("lm")("this comedy was")["input_ids"]
    for name in roles.PIPELINE_ROLES:
        tokenizer, model = profiles.load_tokenizer(name), profiles.load_model(name)
        assert type(model).__name__ == "GPT2LMHeadModel" and not model.training, name
        assert tokenizer("this comedy was")["input_ids"] == expected and tokenizer.pad_token == tiny.PAD, name
        assert (tiny.root() / roles.role(name).tiny_folder / "model.safetensors").is_file(), name


def test_pipeline_stages_differ_from_each_other_and_from_the_base():
    weights = {name: profiles.load_model(name).state_dict() for name in roles.PIPELINE_ROLES}
    for first, second in itertools.combinations(roles.PIPELINE_ROLES, 2):
        assert any(not torch.equal(weights[first][key], weights[second][key]) for key in weights[first]), (first, second)


def test_sft_stage_answers_the_questions_that_the_base_cannot():
    facts = pipeline_facts()
    assert facts["pipeline_base"]["exact_match"] < 0.1, "the base LM was never taught the question format"
    assert facts["pipeline_sft"]["exact_match"] > facts["pipeline_base"]["exact_match"] + 0.3, facts


def test_dpo_stage_prefers_the_chosen_continuations_on_held_out_pairs():
    facts = pipeline_facts()
    assert facts["pipeline_dpo"]["implicit_reward_accuracy"] > 0.8, facts["pipeline_dpo"]
    assert facts["pipeline_dpo"]["preference_accuracy"] > facts["pipeline_sft"]["preference_accuracy"] + 0.1, facts


def test_rl_stage_raises_the_sentiment_reward_over_the_base_and_the_dpo_stage():
    facts = pipeline_facts()
    assert facts["pipeline_rl"]["reward"] > facts["pipeline_base"]["reward"] + 0.2, facts
    assert facts["pipeline_rl"]["reward"] > facts["pipeline_dpo"]["reward"], facts


def test_saved_stages_reproduce_the_facts_the_build_recorded():
    facts = pipeline_facts()
    reward_fn = pipeline.sentiment_scorer(profiles.load_model("sentiment_classifier"), profiles.load_tokenizer("sentiment_classifier"))
    evaluation = pipeline.evaluation_set(tiny.root())
    stages = {name: (profiles.load_model(name), profiles.load_tokenizer(name)) for name in ("pipeline_sft", "pipeline_rl")}
    with tiny.build_settings():  # the build's thread count: the same float sums, so the same greedy answers and samples
        for name, (model, tokenizer) in stages.items():
            measured = pipeline.stage_metrics(model, tokenizer, evaluation, reward_fn)
            assert measured == {key: facts[name][key] for key in measured}, name


def test_supervised_fine_tuning_is_deterministic():
    tokenizer = profiles.load_tokenizer("lm")
    rows = profiles.load_dataset("qa", split="train").select(range(40)).to_list()
    texts = profiles.load_dataset("reviews", split="train")["text"][:40]
    runs = [pipeline.supervised_fine_tune(profiles.load_model("lm"), tokenizer, rows, texts, steps=3, batch_size=4, reviews=2)
            for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0]) == 3
