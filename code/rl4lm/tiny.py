"""The tiny profile: small models and data sets the project builds itself, deterministically.

Everything is generated from a seeded grammar of short movie reviews whose sentiment is
known (a score from 1 to 10, like IMDB's stars), so that generation, decoding, sentiment
rewards and preference pairs all mean something. ``python -m rl4lm.tiny`` builds it all (once; ``--force`` rebuilds):
a byte-level BPE tokenizer (``tokenizers``), a small GPT-2 (causal LM), a small DistilBERT
sentiment classifier, and the data sets. Each is saved in Hugging Face format and loaded
back with the same ``from_pretrained`` / ``load_dataset`` calls as the hub assets.
"""
from __future__ import annotations

import hashlib
import math
import json
import random
import time
from pathlib import Path

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


def version() -> str:
    """Hash of this file: a change to the recipe builds a fresh set of assets."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:10]


def root() -> Path:
    """Folder holding this version's tiny assets."""
    from .profiles import cache_dir

    return cache_dir() / f"tiny-{version()}"


def asset_path(role: str) -> Path:
    """Folder of a tiny asset, built on first use."""
    from .profiles import ProfileError
    from .registry import FULL

    if role not in FULL:
        raise ProfileError(f"'{role}' is not in the registry; known roles are {', '.join(sorted(FULL))}.")
    folder = {"instruct_lm": "lm"}.get(role, role)
    path = root() / folder
    if not (root() / "COMPLETE").exists():
        build_all()
    return path


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    """Write rows as JSON lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def build_datasets(out: Path, rng: random.Random) -> list[str]:
    """Write the tiny data sets (reviews, qa, preferences) and return the LM pre-training texts."""
    train = [review(rng) for _ in range(12000)]
    test = [review(rng) for _ in range(1000)]
    _write_jsonl(out / "reviews" / "train.jsonl", train)
    _write_jsonl(out / "reviews" / "test.jsonl", test)
    _write_jsonl(out / "qa" / "train.jsonl", [qa_example(rng) for _ in range(3000)])
    _write_jsonl(out / "qa" / "test.jsonl", [qa_example(rng) for _ in range(300)])
    _write_jsonl(out / "preferences" / "train.jsonl", [preference_example(rng) for _ in range(3000)])
    _write_jsonl(out / "preferences" / "test.jsonl", [preference_example(rng) for _ in range(300)])
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


def _batches(ids: "torch.Tensor", batch: int, generator) -> "torch.Tensor":
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


def build_all(force: bool = False) -> Path:
    """Build every tiny asset into the cache (once; a file lock guards concurrent builds)."""
    import torch
    from filelock import FileLock

    target = root()
    with FileLock(str(target) + ".lock"):
        if (target / "COMPLETE").exists() and not force:
            return target
        start = time.perf_counter()
        torch.manual_seed(SEED)
        rng = random.Random(SEED)
        texts = build_datasets(target, rng)
        tokenizer = build_tokenizer(texts, target / "tokenizer")
        losses = train_lm(texts, tokenizer, target / "lm")
        train_classifier(tokenizer, target / "sentiment_classifier", target / "reviews")
        seconds = time.perf_counter() - start
        (target / "build.json").write_text(json.dumps({"seconds": seconds, "lm_loss_first": losses[0],
                                                       "lm_loss_last": sum(losses[-50:]) / 50,
                                                       "torch_threads": torch.get_num_threads()}, indent=1))
        (target / "COMPLETE").write_text(version())
    return target


if __name__ == "__main__":
    import sys

    path = build_all(force="--force" in sys.argv)
    print(f"tiny assets: {path}")
    print((path / "build.json").read_text())
