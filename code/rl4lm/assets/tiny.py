"""The tiny profile: small models and data sets the project builds itself, deterministically.

Everything is generated from a seeded grammar of short movie reviews whose sentiment is
known (a score from 1 to 10, like IMDB's stars), so that generation, decoding, sentiment
rewards and preference pairs all mean something. ``python -m rl4lm.assets.tiny`` builds it all (once; ``--force`` rebuilds):
a byte-level BPE tokenizer (``tokenizers``), a small GPT-2 (causal LM), a small DistilBERT
sentiment classifier, the data sets, and the GPT-2 after SFT, DPO and PPO-RLHF (:mod:`rl4lm.assets.pipeline`).
Each is saved in Hugging Face format and loaded back with the same ``from_pretrained`` /
``load_dataset`` calls as the hub assets.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ProfileError
from . import pipeline, roles
from .cache import cache_dir, writable_cache_dir

if TYPE_CHECKING:
    import torch

SEED = 0
GENRES = ["comedy", "thriller", "drama", "documentary", "musical", "western", "romance", "cartoon"]
ASPECTS = ["the acting", "the plot", "the soundtrack", "the dialogue", "the ending", "the cast",
           "the pacing", "the camera work", "the script", "the villain", "the humour", "the lighting"]
ADJECTIVES = {
    1: ["wonderful", "brilliant", "moving", "superb", "charming", "clever", "gripping", "beautiful",
        "delightful", "funny", "fresh", "touching"],
    0: ["boring", "dull", "clumsy", "awful", "predictable", "confusing", "lifeless", "terrible",
        "silly", "tedious", "flat", "messy"],
}
INTENSIFIERS = ["", "", "very ", "truly ", "really ", "quite ", "so "]
VERBS = {1: ["loved", "enjoyed", "adored", "admired"], 0: ["hated", "disliked", "regretted", "endured"]}
NOUNS = {1: ["gem", "treat", "triumph", "joy", "delight"], 0: ["mess", "disaster", "bore", "letdown", "failure"]}
CLOSINGS = {
    1: ["i would watch it again .", "highly recommended .", "a real treat for the whole family .",
        "one of the best films of the year .", "go and see it ."],
    0: ["i want my money back .", "avoid it at all costs .", "not worth your time .",
        "one of the worst films of the year .", "skip this one ."],
}
OPENINGS = ["this {g} was {i}{a} .", "the new {g} is {i}{a} .", "i saw this {g} last night and it was {i}{a} .",
            "what a {a} {g} ."]
BODY = ["{asp} was {i}{a} .", "i {v} {asp} .", "it is a {a} {n} .", "{asp} felt {i}{a} .",
        "{asp} was {a} and {asp2} was {a2} ."]

LM_CONFIG = dict(n_positions=256, n_embd=96, n_layer=2, n_head=4)
VOCAB_SIZE = 1024
EOS, PAD = "<|endoftext|>", "<|pad|>"
MANIFEST = "MANIFEST.json"  # checksums of every file; written last, so its presence means "complete"
BUILD_THREADS = 2  # the build always uses two torch threads (float sums depend on the count): the same weights everywhere


def review(rng: random.Random, score: int | None = None) -> dict:
    """Sample one review with a known score (1-10); each sentence is positive with a probability rising in the score."""
    score = rng.randint(1, 10) if score is None else score
    q = 1 / (1 + math.exp(-1.2 * (score - 5.5)))  # P(positive sentence): 0.005 at 1, 0.65 at 6, 0.995 at 10
    genre = rng.choice(GENRES)
    label = int(score >= 6)

    def pol() -> int:
        return int(rng.random() < q)

    def fill(template: str) -> str:
        p = pol()
        asp, asp2 = rng.sample(ASPECTS, 2)
        return template.format(g=genre, i=rng.choice(INTENSIFIERS), a=rng.choice(ADJECTIVES[p]), v=rng.choice(VERBS[p]),
                               n=rng.choice(NOUNS[p]), asp=asp, asp2=asp2, a2=rng.choice(ADJECTIVES[p]))

    sentences = [fill(rng.choice(OPENINGS))]
    sentences += [fill(rng.choice(BODY)) for _ in range(rng.randint(1, 3))]
    sentences.append(rng.choice(CLOSINGS[label]))
    text = " ".join(sentences)
    return {"text": text, "label": label, "score": score, "genre": genre}


def labelled(example: dict) -> str:
    """The prompt format the tiny LM also sees in pre-training: 'review : ... sentiment : positive'."""
    return f"review : {example['text']} sentiment : {'positive' if example['label'] else 'negative'}"


def qa_example(rng: random.Random) -> dict:
    """One (review, question, answer) triple; answers are read off the review."""
    ex = review(rng)
    if rng.random() < 0.5:
        question, answer = "did the reviewer like the film ?", "yes" if ex["label"] else "no"
    else:
        question, answer = "what kind of film is it ?", ex["genre"]
    return {"context": ex["text"], "question": question, "answer": answer}


def preference_example(rng: random.Random) -> dict:
    """A prompt with two continuations; the continuation of the higher-scored review is chosen."""
    hi, lo = rng.randint(6, 10), rng.randint(1, 5)
    genre = rng.choice(GENRES)
    prompt = f"this {genre} was"

    def continuation(score: int) -> str:
        ex = review(rng, score)
        words = ex["text"].split(" . ", 1)
        adj = rng.choice(ADJECTIVES[int(score >= 6)])
        return f" {adj} . " + (words[1] if len(words) > 1 else "")

    return {"prompt": prompt, "chosen": continuation(hi), "rejected": continuation(lo),
            "score_chosen": hi, "score_rejected": lo}


MULTIPLE_CHOICE_SEED = 1  # the items have their own generator, so the reviews, tokenizer and LM of the build stay as they were
MULTIPLE_CHOICE_ITEMS = 300  # per task and split
QUESTION = "{passage}\nquestion : {question}\nanswer :"  # RTE- and BoolQ-style prompts, in the grammar's spelling


def copa_style_item(rng: random.Random) -> dict:
    """COPA-style item: which of two closing sentences ends the review? The other one closes the opposite sentiment."""
    ex = review(rng)
    closing = next(c for c in CLOSINGS[ex["label"]] if ex["text"].endswith(c))
    options = [closing, rng.choice(CLOSINGS[1 - ex["label"]])]
    rng.shuffle(options)
    return {"task": "copa", "context": ex["text"][: -len(closing)].rstrip(), "options": options, "label": options.index(closing)}


def _other_genre(rng: random.Random, genre: str) -> str:
    """A genre other than ``genre``."""
    return rng.choice([g for g in GENRES if g != genre])


def rte_style_item(rng: random.Random) -> dict:
    """RTE-style item: does the review entail a hypothesis about its verdict or genre? Options true / false, as RTE's."""
    ex = review(rng)
    entailed = rng.random() < 0.5
    if rng.random() < 0.5:
        liked = bool(ex["label"]) == entailed
        hypothesis = "the reviewer liked the film ." if liked else "the reviewer did not like the film ."
    else:
        hypothesis = f"the film is a {ex['genre'] if entailed else _other_genre(rng, ex['genre'])} ."
    return {"task": "rte", "context": QUESTION.format(passage=ex["text"], question=f"{hypothesis} true or false ?"),
            "options": ["true", "false"], "label": 0 if entailed else 1}


def boolq_style_item(rng: random.Random) -> dict:
    """BoolQ-style item: a yes/no question about the review's verdict or genre. Options no / yes, as BoolQ's."""
    ex = review(rng)
    if rng.random() < 0.5:
        question, yes = "did the reviewer like the film ?", bool(ex["label"])
    else:
        yes = rng.random() < 0.5
        question = f"is it a {ex['genre'] if yes else _other_genre(rng, ex['genre'])} ?"
    return {"task": "boolq", "context": QUESTION.format(passage=ex["text"], question=question),
            "options": ["no", "yes"], "label": int(yes)}


def multiple_choice_items(rng: random.Random, n: int) -> list[dict]:
    """``n`` COPA-, ``n`` RTE- and ``n`` BoolQ-style items (task, context, options, label), in that order."""
    return [make(rng) for make in (copa_style_item, rte_style_item, boolq_style_item) for _ in range(n)]


# The recipe: this file and the package sources the build runs (the pipeline's trainers, samplers and losses included),
# relative to the package folder. A change to any of them builds a fresh set of assets.
BUILD_SOURCES = ("assets/tiny.py", "assets/pipeline.py", "lm/sft.py", "lm/rollout.py", "lm/logprobs.py", "lm/decoding.py",
                 "rlhf/dpo.py", "rlhf/conversations.py", "rlhf/ppo_lm.py", "rlhf/lm_policy_gradient.py", "rlhf/rewards.py", "rl/policy_gradient.py")


def version() -> str:
    """Hash of the recipe (:data:`BUILD_SOURCES`): a change to the build or to a trainer it runs builds a fresh set of assets."""
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for name in BUILD_SOURCES:
        digest.update(name.encode() + b"\0" + (package / name).read_bytes())
    return digest.hexdigest()[:10]


def root() -> Path:
    """Folder holding this version's tiny assets (complete once its manifest exists)."""
    return cache_dir() / f"tiny-{version()}"


def is_complete(folder: Path) -> bool:
    """True when a build finished: the manifest is written last, just before the folder gets its final name."""
    return (folder / MANIFEST).is_file()


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path, build: dict) -> None:
    """Record the SHA-256 of every file of a finished build, and how it was built."""
    files = {str(p.relative_to(folder)): file_digest(p) for p in sorted(folder.rglob("*")) if p.is_file()}
    (folder / MANIFEST).write_text(json.dumps({"version": version(), "build": build, "files": files}, indent=1))


def damaged_file(folder: Path) -> tuple[str, str] | None:
    """(file, what is wrong) for the first file that is missing or differs from the manifest, else None."""
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError):
        return MANIFEST, "is unreadable"
    for name, digest in files.items():
        path = folder / name
        if not path.is_file():
            return name, "is missing"
        if file_digest(path) != digest:
            return name, "is damaged (its checksum differs from the build's)"
    return None


_VERIFIED: set[tuple[str, float]] = set()  # (folder, manifest mtime) checked in this process


def verify(folder: Path) -> None:
    """Raise a one-sentence ProfileError naming the damaged file and the rebuild command, once per process."""
    key = (str(folder), (folder / MANIFEST).stat().st_mtime)
    if key in _VERIFIED:
        return
    problem = damaged_file(folder)
    if problem is not None:
        name, what = problem
        raise ProfileError(f"The tiny asset file {folder / name} {what}; rebuild the tiny assets with "
                           f"`python -m rl4lm.assets.tiny --force` (or delete {folder}).")
    _VERIFIED.add(key)


def asset_path(name: str) -> Path:
    """Folder of a role's tiny asset: built on first use, checked against its manifest once per process."""
    folder = roles.role(name).tiny_folder
    target = root()
    if not is_complete(target):
        build_all()
    verify(target)
    return target / folder


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    """Write rows as JSON lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def build_datasets(out: Path, rng: random.Random) -> list[str]:
    """Write the tiny data sets (reviews, qa, preferences, multiple_choice) and return the LM pre-training texts."""
    train = [review(rng) for _ in range(12000)]
    test = [review(rng) for _ in range(1000)]
    _write_jsonl(out / "reviews" / "train.jsonl", train)
    _write_jsonl(out / "reviews" / "test.jsonl", test)
    _write_jsonl(out / "qa" / "train.jsonl", [qa_example(rng) for _ in range(3000)])
    _write_jsonl(out / "qa" / "test.jsonl", [qa_example(rng) for _ in range(300)])
    _write_jsonl(out / "preferences" / "train.jsonl", [preference_example(rng) for _ in range(3000)])
    _write_jsonl(out / "preferences" / "test.jsonl", [preference_example(rng) for _ in range(300)])
    items = random.Random(MULTIPLE_CHOICE_SEED)  # not ``rng``: the pre-training texts below stay the same
    for split in ("train", "test"):
        _write_jsonl(out / "multiple_choice" / f"{split}.jsonl", multiple_choice_items(items, MULTIPLE_CHOICE_ITEMS))
    return [labelled(ex) if rng.random() < 0.25 else ex["text"] for ex in train]


def build_tokenizer(texts: list[str], out: Path):
    """Train a byte-level BPE tokenizer (as GPT-2's) and save it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=[EOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, pad_token=PAD,
                                   model_max_length=LM_CONFIG["n_positions"])
    fast.save_pretrained(out)
    return fast


def _batches(ids: torch.Tensor, batch: int, generator) -> torch.Tensor:
    """Yield random rows of a (n, seq) tensor, ``batch`` at a time, forever."""
    import torch

    while True:
        yield ids[torch.randint(len(ids), (batch,), generator=generator)]


def train_lm(texts: list[str], tokenizer, out: Path, steps: int = 1000, seq: int = 64, batch: int = 16):
    """Pre-train a small GPT-2 on packed review text with next-token cross-entropy, then save it."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    stream = []
    for ids in tokenizer(texts)["input_ids"]:
        stream += ids + [tokenizer.eos_token_id]
    n = len(stream) // seq
    data = torch.tensor(stream[: n * seq]).view(n, seq)
    config = GPT2Config(vocab_size=len(tokenizer), bos_token_id=tokenizer.eos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **LM_CONFIG)
    model = GPT2LMHeadModel(config)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(SEED)
    losses = []
    model.train()
    for _, x in zip(range(steps), _batches(data, batch, g)):
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return losses


def train_classifier(tokenizer, out: Path, reviews: Path, steps: int = 150, batch: int = 32):
    """Train a 2-layer DistilBERT sentiment classifier on the tiny reviews, then save it."""
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    rows = [json.loads(line) for line in (reviews / "train.jsonl").read_text().splitlines()]
    enc = tokenizer([r["text"] for r in rows], padding=True, truncation=True, max_length=64, return_tensors="pt")
    labels = torch.tensor([r["label"] for r in rows])
    config = DistilBertConfig(vocab_size=len(tokenizer), dim=64, n_layers=2, n_heads=4, hidden_dim=128,
                              max_position_embeddings=LM_CONFIG["n_positions"], pad_token_id=tokenizer.pad_token_id,
                              num_labels=2, id2label={0: "NEGATIVE", 1: "POSITIVE"},
                              label2id={"NEGATIVE": 0, "POSITIVE": 1})
    model = DistilBertForSequenceClassification(config)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(rows), (batch,), generator=g)
        loss = model(input_ids=enc["input_ids"][idx], attention_mask=enc["attention_mask"][idx], labels=labels[idx]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


@contextlib.contextmanager
def build_settings(threads: int = BUILD_THREADS):
    """Fixed torch threads (float sums depend on the thread count) and quiet libraries for a build."""
    import torch
    import transformers

    saved_threads, saved_verbosity = torch.get_num_threads(), transformers.logging.get_verbosity()
    torch.set_num_threads(threads)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        torch.set_num_threads(saved_threads)
        transformers.logging.set_verbosity(saved_verbosity)
        transformers.logging.enable_progress_bar()


def _say(text: str, end: str = "") -> None:
    """Progress of a build, on one growing line."""
    print(text, end=end, flush=True)


def build_into(folder: Path) -> dict:
    """Build every tiny asset into ``folder`` (seeded, fixed threads); return facts about the build."""
    import torch

    start = time.perf_counter()
    with build_settings():
        torch.manual_seed(SEED)
        rng = random.Random(SEED)
        _say("data sets, ")
        texts = build_datasets(folder, rng)
        _say("tokenizer, ")
        tokenizer = build_tokenizer(texts, folder / "tokenizer")
        _say("language model, ")
        losses = train_lm(texts, tokenizer, folder / "lm")
        _say("sentiment classifier, ")
        train_classifier(tokenizer, folder / "sentiment_classifier", folder / "reviews")
        base_seconds = time.perf_counter() - start
        _say("post-training pipeline (")
        stages = pipeline.build_pipeline(folder, tokenizer, say=_say)  # after the LM and the classifier, with its own seeds
        _say(")")
    return {"seconds": round(time.perf_counter() - start, 1), "lm_loss_first": losses[0],
            "lm_loss_last": sum(losses[-50:]) / 50, "torch_threads": BUILD_THREADS, "torch": torch.__version__,
            "seconds_before_pipeline": round(base_seconds, 1), "pipeline": stages}


def build_all(force: bool = False) -> Path:
    """Build every tiny asset into the cache, once; ``force`` rebuilds. Returns the folder.

    The build goes into a temporary folder that is renamed into place only when it is complete, so an
    interrupted build leaves either the previous complete set or nothing. A file lock guards concurrent builds.
    """
    from filelock import FileLock

    base = writable_cache_dir()
    target = root()
    with FileLock(str(target) + ".lock"):
        if is_complete(target) and not force:
            return target
        for stale in base.glob(f"{target.name}.partial-*"):  # left by an interrupted build
            shutil.rmtree(stale, ignore_errors=True)
        partial = base / f"{target.name}.partial-{os.getpid()}"
        _say(f"Building the tiny profile's models and data sets in {target} (first use on this machine, "
             f"about two minutes on 2 CPU cores): ")
        write_manifest(partial, build_into(partial))
        if target.exists():
            old = base / f"{target.name}.old-{os.getpid()}"
            target.rename(old)
            partial.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            partial.rename(target)
        _say(f", done in {json.loads((target / MANIFEST).read_text())['build']['seconds']:.0f} s.", end="\n")
    return target


def main(argv: list[str] | None = None) -> None:
    """Command line: build the tiny assets (``--force`` rebuilds) and print where they are."""
    parser = argparse.ArgumentParser(description="Build the tiny profile's models and data sets (once).")
    parser.add_argument("--force", action="store_true", help="rebuild even if a complete build exists")
    args = parser.parse_args(argv)
    path = build_all(force=args.force)
    print(f"tiny assets: {path}")
    print(json.dumps(json.loads((path / MANIFEST).read_text())["build"], indent=1))


if __name__ == "__main__":
    main()
