"""The ``full`` profile, offline: every role and every page against a stand-in of the hub (see ``fullhub.py``).

The stand-in holds the real repositories (names, commits, configs, splits, columns, file layout) with small
contents, so a wrong repository, revision, config, split or column name fails here instead of in a Colab.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from huggingface_hub import try_to_load_from_cache

import fullhub
from rl4lm.assets import roles
from rl4lm_book import assignments
from rl4lm_book.bench import executable_pages
from rl4lm_book.book import ROOT

# Loads every role through rl4lm.profiles in a fresh interpreter (the hub libraries read the environment on import).
LOAD_EVERY_ROLE = r"""
import json, torch
from rl4lm import profiles
from rl4lm.assets import roles

report = {"profile": profiles.current_profile()}
for name in roles.MODEL_ROLES:
    tokenizer, model = profiles.load_tokenizer(name), profiles.load_model(name)
    entry = {"model": type(model).__name__, "model_type": model.config.model_type, "training": model.training,
             "eos": tokenizer.eos_token, "bos": tokenizer.bos_token, "pad": tokenizer.pad_token, "pad_id": tokenizer.pad_token_id,
             "id2label": {str(k): v for k, v in model.config.id2label.items()}, "dtype": str(model.dtype),
             "positions": getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None),
             "tokens": len(tokenizer), "rows": model.get_input_embeddings().weight.shape[0],
             "fingerprint": sum(float(p.double().sum()) for p in model.parameters())}
    if model.config.model_type != "distilbert":
        prompt = "this comedy was"
        if tokenizer.chat_template:
            entry["chat"] = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                          add_generation_prompt=True)
            prompt = entry["chat"]
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        entry["generated"] = out.shape[1] - ids.shape[1]
    else:
        texts = ["this comedy was wonderful . i loved the cast . highly recommended .",
                 "this comedy was awful . i hated the plot . skip this one ."]
        with torch.no_grad():
            probs = model(**tokenizer(texts, return_tensors="pt", padding=True)).logits.softmax(-1)
        entry["p_positive"] = probs[:, roles.POSITIVE_LABEL].tolist()
    report[name] = entry
for name in roles.DATASET_ROLES:
    data = profiles.load_dataset(name)
    report[name] = {split: {"rows": part.num_rows, "columns": part.column_names,
                            "features": {k: repr(v) for k, v in part.features.items()}, "first": part[0]}
                    for split, part in data.items()}
    report[name]["test_split_rows"] = profiles.load_dataset(name, split="test").num_rows
    report[name]["train_split_rows"] = profiles.load_dataset(name, split="train").num_rows
print("REPORT " + json.dumps(report))
"""


# The stand-in's models are tiny: one torch thread runs them several times faster than two contending threads.
SPEED = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory) -> Path:
    """The hub stand-in, built once for this module (a few seconds, from the tiny assets)."""
    return fullhub.build(tmp_path_factory.mktemp("fullhub"))


@pytest.fixture(scope="module")
def full_report(stand_in) -> dict:
    """What every role looks like when loaded through rl4lm.profiles in the full profile."""
    env = dict(os.environ, **fullhub.environment(stand_in), **SPEED)
    out = subprocess.run([sys.executable, "-c", LOAD_EVERY_ROLE], env=env, capture_output=True, text=True, timeout=600)
    lines = [line for line in out.stdout.splitlines() if line.startswith("REPORT ")]
    assert out.returncode == 0 and lines, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("REPORT "))


@pytest.fixture(scope="module")
def full_environment(stand_in):
    """os.environ set for the full profile on the stand-in (notebook kernels inherit it), restored afterwards."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {**fullhub.environment(stand_in), **SPEED}.items():
            patch.setenv(key, value)
        yield stand_in


def test_every_role_is_a_stand_in_repository_at_its_pinned_revision(stand_in):
    for role in roles.ROLES.values():
        assert role.hub_repo in fullhub.COMMITS, f"{role.name}: {role.hub_repo} is not a repository the course verified"
        repo_type = "model" if role.is_model else "dataset"
        name = "config.json" if role.is_model else "README.md"
        found = try_to_load_from_cache(role.hub_repo, name, cache_dir=stand_in / "hub", revision=role.revision,
                                       repo_type=repo_type)
        assert isinstance(found, str), f"{role.name}: {role.hub_repo}@{role.revision} is not the stand-in's repository"
        pinned = {fullhub.COMMITS[role.hub_repo], *dict([fullhub.OTHER_REFS.get(role.hub_repo, ("", ""))])}
        assert role.revision in pinned, f"{role.name}: pin a verified commit (or ref), not {role.revision!r}"
        if not role.is_model:
            card = Path(found).read_text()
            assert role.config is None or f"config_name: {role.config}" in card, f"{role.name}: no config {role.config}"
            for hub_split in role.splits.values():
                assert f"- split: {hub_split}" in card, f"{role.name}: the hub has no split {hub_split}"


def test_full_profile_is_active(full_report):
    assert full_report["profile"] == "full"


def test_full_lm_is_gpt2_and_pads_with_end_of_text(full_report):
    lm = full_report["lm"]
    assert (lm["model"], lm["model_type"], lm["positions"]) == ("GPT2LMHeadModel", "gpt2", 1024)
    assert lm["pad"] == lm["eos"] == "<|endoftext|>", "GPT-2 has no pad token: load_tokenizer must reuse end-of-text"
    assert not lm["training"] and lm["generated"] == 5


def test_full_instruct_lm_is_qwen2_with_a_chat_template(full_report):
    qwen = full_report["instruct_lm"]
    assert (qwen["model"], qwen["model_type"]) == ("Qwen2ForCausalLM", "qwen2")
    assert (qwen["eos"], qwen["pad"]) == ("<|im_end|>", "<|endoftext|>")
    assert qwen["chat"].endswith("<|im_start|>user\nthis comedy was<|im_end|>\n<|im_start|>assistant\n")
    assert qwen["generated"] >= 1


def test_full_classifier_label_1_is_positive(full_report):
    classifier = full_report["sentiment_classifier"]
    assert classifier["model"] == "DistilBertForSequenceClassification"
    assert classifier["id2label"] == {"0": "NEGATIVE", "1": "POSITIVE"}
    assert classifier["id2label"][str(roles.POSITIVE_LABEL)] == "POSITIVE"
    positive, negative = classifier["p_positive"]
    assert positive > 0.5 > negative


PIPELINE_REPOS = ["allenai/OLMo-2-0425-1B", "allenai/OLMo-2-0425-1B-SFT", "allenai/OLMo-2-0425-1B-DPO",
                  "allenai/OLMo-2-0425-1B-Instruct"]


def test_full_pipeline_roles_are_the_stages_of_olmo2_1b_in_training_order():
    assert [roles.role(name).hub_repo for name in roles.PIPELINE_ROLES] == PIPELINE_REPOS
    assert all(roles.role(name).head == roles.CAUSAL_LM for name in roles.PIPELINE_ROLES)
    assert len({roles.role(name).revision for name in roles.PIPELINE_ROLES}) == 4


def test_full_pipeline_stages_load_as_olmo2_with_its_special_tokens(full_report):
    for name in roles.PIPELINE_ROLES:
        stage = full_report[name]
        assert (stage["model"], stage["model_type"], stage["positions"]) == ("Olmo2ForCausalLM", "olmo2", 4096), name
        assert (stage["bos"], stage["eos"], stage["pad"]) == ("<|endoftext|>", "<|endoftext|>", "<|pad|>"), name
        assert stage["rows"] > stage["tokens"], "OLMo 2 pads its embedding beyond the tokenizer"
        assert not stage["training"] and stage["generated"] >= 1
    assert full_report["pipeline_base"]["dtype"] == "torch.float32", "the base's weights are stored in float32"
    assert "chat" not in full_report["pipeline_base"], "OLMo 2's base model has no chat template"
    for name in roles.PIPELINE_ROLES[1:]:
        assert full_report[name]["chat"] == "<|endoftext|><|user|>\nthis comedy was\n<|assistant|>\n", name
    assert len({full_report[name]["fingerprint"] for name in roles.PIPELINE_ROLES}) == 4, "each stage has its own weights"


def test_full_pipeline_base_is_sharded_and_the_later_stages_are_not(stand_in):
    def cached(name: str, filename: str):
        role = roles.role(name)
        return try_to_load_from_cache(role.hub_repo, filename, cache_dir=stand_in / "hub", revision=role.revision)

    assert isinstance(cached("pipeline_base", "model.safetensors.index.json"), str)
    assert isinstance(cached("pipeline_base", "model-00002-of-00002.safetensors"), str)
    for name in roles.PIPELINE_ROLES[1:]:
        assert isinstance(cached(name, "model.safetensors"), str), name
    assert '"rope_theta": 500000' in Path(cached("pipeline_rl", "config.json")).read_text(), "the hub's spelling of the config"


def test_full_reviews_are_imdb_with_the_course_splits(full_report):
    reviews = full_report["reviews"]
    assert {"train", "test"} <= set(reviews) and "unsupervised" in reviews
    for split in ("train", "test"):
        assert reviews[split]["columns"] == ["text", "label"]
        assert reviews[split]["features"]["label"] == "ClassLabel(names=['neg', 'pos'])"
    assert reviews["test_split_rows"] == reviews["test"]["rows"] >= 1000  # pages score 1,000 test reviews


def test_full_preferences_are_conversations(full_report):
    prefs = full_report["preferences"]
    assert set(prefs) >= {"train", "test"}
    assert prefs["train"]["columns"] == ["chosen", "rejected", "score_chosen", "score_rejected"]
    first = prefs["train"]["first"]
    for side in ("chosen", "rejected"):
        assert [m["role"] for m in first[side]] == ["user", "assistant"]
    assert first["chosen"][0] == first["rejected"][0], "both conversations share the user's prompt"
    assert first["score_chosen"] > first["score_rejected"]


def test_full_qa_is_squad_with_validation_as_the_course_test_split(full_report):
    qa = full_report["qa"]
    assert set(qa) - {"test_split_rows", "train_split_rows"} == {"train", "test"}, "SQuAD's validation is the course's test"
    assert qa["train"]["columns"] == ["id", "title", "context", "question", "answers"]
    answers = qa["test"]["first"]["answers"]
    context = qa["test"]["first"]["context"]
    assert context[answers["answer_start"][0]:].startswith(answers["text"][0])
    assert qa["test_split_rows"] == qa["test"]["rows"] >= 200 and qa["train_split_rows"] >= 4000  # homework 1 in full


PAGES = executable_pages()


PAGE_WORKERS = 2  # pages run one torch thread each (SPEED), so two kernels at a time keep two cores busy


def execute_page(page: Path) -> None:
    """Execute one page or homework source top to bottom in a fresh kernel (its folder as the working directory)."""
    cwd = page.parent.parent if page.parent.name == "solutions" else page.parent
    assignments.execute(assignments.read_source(page), cwd=cwd)


@pytest.fixture(scope="module")
def page_runs(full_environment, request):
    """The selected pages started at once on PAGE_WORKERS kernels in the full profile; each test waits for its own."""
    selected = [item.callspec.params["page"] for item in request.session.items
                if getattr(item, "originalname", None) == "test_page_executes_in_the_full_profile"]
    pool = ThreadPoolExecutor(max_workers=PAGE_WORKERS, thread_name_prefix="full-page")
    runs = {page: pool.submit(execute_page, page) for page in selected}
    yield runs
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_executes_in_the_full_profile(page_runs, page):
    page_runs[page].result()  # re-raises the page's error (the failing cell and its traceback)


def test_full_multiple_choice_tasks_are_configs_of_the_pinned_super_glue(stand_in):
    role = roles.role("multiple_choice")
    card = Path(try_to_load_from_cache(role.hub_repo, "README.md", cache_dir=stand_in / "hub", revision=role.revision,
                                       repo_type="dataset")).read_text()
    for task in role.tasks:
        assert f"config_name: {task}" in card, f"the hub card has no config {task}"
        for hub_split in role.splits.values():
            found = try_to_load_from_cache(role.hub_repo, f"{task}/{hub_split}-00000-of-00001.parquet", cache_dir=stand_in / "hub",
                                           revision=role.revision, repo_type="dataset")
            assert isinstance(found, str), f"{task}/{hub_split} is not a parquet file of {role.hub_repo}@{role.revision}"


def test_full_multiple_choice_is_one_schema_with_validation_as_the_course_test_split(full_report):
    items = full_report["multiple_choice"]
    assert set(items) - {"test_split_rows", "train_split_rows"} == {"train", "test"}, "SuperGLUE's unlabelled test split is left out"
    for split in ("train", "test"):
        assert items[split]["columns"] == ["task", "context", "options", "label"]
        assert items[split]["features"]["options"] == "List(Value('string'))"
    first = items["test"]["first"]
    assert first["task"] == "copa" and first["context"].endswith((" because", " therefore"))
    assert 0 <= first["label"] < len(first["options"]) == 2
    sizes = fullhub.SIZES["super_glue"]
    assert items["test_split_rows"] == items["test"]["rows"] == 3 * sizes["validation"]
    assert items["train_split_rows"] == 3 * sizes["train"]
