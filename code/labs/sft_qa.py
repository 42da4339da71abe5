"""Supervised fine-tuning of the profile's language model on question answering (Session 2, Homework 1).

Teacher forcing with the per-sequence loss on answer tokens only (rl4lm.lm.sft), exact match of greedy
answers before and after. Runs in both profiles: tiny (the course's 0.3M-parameter GPT-2 on synthetic review
questions, a few minutes at most on 2 CPU cores) and full (GPT-2 small on SQuAD, a GPU helps).

    python code/labs/sft_qa.py --seed 0
    RL4LM_PROFILE=full python code/labs/sft_qa.py --steps 300

Ends with one JSON line: exact_match_before, exact_match_after, loss_first, loss_last, steps, seconds.
"""
from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass

import torch

from rl4lm import labs, profiles
from rl4lm.lm import sft

DEFAULTS = {  # per profile: the settings Homework 1 uses
    "tiny": dict(steps=200, batch_size=16, learning_rate=2e-3, max_length=256),
    "full": dict(steps=150, batch_size=8, learning_rate=5e-5, max_length=384),
}


@dataclass
class Args:
    """Supervised fine-tuning on question answering; unset options take the active profile's defaults."""

    seed: int = labs.arg(0, "seed of the data order and of torch")
    steps: int | None = labs.arg(None, "optimizer steps")
    batch_size: int | None = labs.arg(None, "questions per step")
    learning_rate: float | None = labs.arg(None, "AdamW learning rate")
    max_length: int | None = labs.arg(None, "tokens per sequence; long contexts are cut from the left")
    eval_rows: int = labs.arg(200, "test questions scored before and after")
    log_every: int = labs.arg(50, "print the running loss every this many steps")


def main(argv: list[str] | None = None) -> dict:
    """Fine-tune, log the loss, print the results line."""
    args = labs.parse_args(Args, argv, __doc__.splitlines()[0])
    defaults = DEFAULTS[profiles.current_profile()]
    settings = {key: getattr(args, key) if getattr(args, key) is not None else value for key, value in defaults.items()}
    if settings["steps"] < 1 or settings["batch_size"] < 1 or args.eval_rows < 1:
        raise SystemExit("--steps, --batch-size and --eval-rows must be at least 1")
    torch.manual_seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = profiles.load_tokenizer("lm")
    model = copy.deepcopy(profiles.load_model("lm")).to(device)
    qa = profiles.load_dataset("qa")
    train_rows = [dict(row) for row in qa["train"]]
    eval_rows = [dict(row) for row in qa["test"].shuffle(seed=args.seed).select(range(min(args.eval_rows, qa["test"].num_rows)))]

    start = time.perf_counter()
    before, _ = sft.answer_accuracy(model, tokenizer, eval_rows, max_length=settings["max_length"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["learning_rate"])
    rng = random.Random(args.seed)
    losses = []
    model.train()
    for step in range(1, settings["steps"] + 1):
        rows = rng.sample(train_rows, settings["batch_size"])
        batch = {key: value.to(device) for key, value in sft.qa_batch(tokenizer, rows, settings["max_length"]).items()}
        losses.append(sft.sft_step(model, optimizer, batch))
        if step % args.log_every == 0 or step == settings["steps"]:
            window = losses[-args.log_every:]
            labs.log(step, loss=sum(window) / len(window))
    after, _ = sft.answer_accuracy(model, tokenizer, eval_rows, max_length=settings["max_length"])
    return labs.finish(profile=profiles.current_profile(), exact_match_before=before, exact_match_after=after,
                       loss_first=losses[0], loss_last=sum(losses[-10:]) / len(losses[-10:]), steps=settings["steps"],
                       seconds=round(time.perf_counter() - start, 1))


if __name__ == "__main__":
    main()
