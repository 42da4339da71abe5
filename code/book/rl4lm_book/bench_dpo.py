"""``make bench``: seconds per DPO step of the course's trainer (rl4lm.rlhf.dpo.train_dpo) against TRL's DPOTrainer, same work.

Both train the tiny profile's LM on the tiny preference triples with the same step: the same ``batch_size`` triples
(TRL reads the course's batches in the course's order: ``train_sampling_strategy="sequential"`` over the triples
laid out by :func:`rl4lm.rlhf.dpo.batch_order`, so each step pads to the same length), each response ended with the
end-of-text token, cut at ``max_length``; the sigmoid loss with the same beta; one AdamW step (constant learning rate,
no weight decay, gradients clipped at norm 1); no dropout; the CPU with the tiny profile's torch threads (one by
default); TRL offline with ``report_to="none"``. The reference's log-probabilities are computed before training by
both (TRL: ``precompute_ref_log_probs=True``), which is the like-for-like comparison; TRL's default, a reference
forward pass in every step, is timed as a third row. A step's time runs from the end of the previous step to the end
of this one (batching, forward, backward, update and whatever bookkeeping each trainer does); the first ``warmup``
steps of each run are dropped, the rest pooled over ``rounds`` runs whose order alternates, and the medians compared.
The mean padded length of a batch is printed beside each, and the mean training loss over the run as a sanity check
(TRL logs that mean; equal batches and settings give nearly equal losses). Timings are reported, never asserted. Usage:
``python -m rl4lm_book.bench_dpo [--steps 25] [--warmup 3] [--rounds 2] [--batch-size 16] [--max-length 128]``.
"""
from __future__ import annotations

import argparse
import copy
import logging
import os
import statistics
import tempfile
import time
import warnings

import torch

BETA, LEARNING_RATE = 0.5, 3e-5  # rl4lm.rlhf.dpo.PIPELINE_DPO's


def course_run(model, tokenizer, triples, steps: int, batch_size: int, max_length: int, seed: int) -> dict:
    """The course's train_dpo for ``steps`` steps (no held-out evaluation): seconds of each step after the first."""
    from rl4lm.rlhf.dpo import DPOConfig, train_dpo

    config = DPOConfig(steps=steps, batch_size=batch_size, learning_rate=LEARNING_RATE, beta=BETA, max_length=max_length, seed=seed)
    history = train_dpo(copy.deepcopy(model), tokenizer, triples, config)["history"]
    ends = history["seconds"]
    return {"seconds": [b - a for a, b in zip(ends, ends[1:])], "loss": statistics.mean(history["loss"])}


def padded_lengths(tokenizer, triples, steps: int, batch_size: int, max_length: int, seed: int) -> list[int]:
    """Columns of each of the course's batches (what each step of either trainer pads to)."""
    from rl4lm.rlhf.dpo import batch_order, collate_preferences, tokenize_triples

    widths = []
    for indices in batch_order(len(triples), batch_size, steps, seed):
        examples = tokenize_triples(tokenizer, [triples[i] for i in indices])
        widths.append(collate_preferences(examples, tokenizer.pad_token_id, max_length)["input_ids"].shape[1])
    return widths


def trl_run(model, tokenizer, triples, steps: int, batch_size: int, max_length: int, seed: int, precompute: bool = True) -> dict:
    """TRL's DPOTrainer with the same step, fed the course's batches in order: seconds of each step after the first."""
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from rl4lm.rlhf.dpo import batch_order

    class StepClock(TrainerCallback):
        """Records the time at the end of every optimizer step."""

        def __init__(self):
            self.ends = []

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.perf_counter())

    ordered = [triples[i] for indices in batch_order(len(triples), batch_size, steps, seed) for i in indices]  # the course's batches
    data = Dataset.from_list([{"prompt": x, "chosen": yw, "rejected": yl} for x, yw, yl in ordered])
    clock, widths = StepClock(), []
    quiet, os.environ["TQDM_DISABLE"] = os.environ.get("TQDM_DISABLE"), "1"  # TRL's reference pass reads it
    try:
        with tempfile.TemporaryDirectory() as out, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            args = DPOConfig(output_dir=out, report_to="none", use_cpu=True, seed=seed, max_steps=steps,
                             per_device_train_batch_size=batch_size, learning_rate=LEARNING_RATE, lr_scheduler_type="constant",
                             warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, beta=BETA, loss_type=["sigmoid"], max_length=max_length,
                             precompute_ref_log_probs=precompute, precompute_ref_batch_size=64, train_sampling_strategy="sequential",
                             save_strategy="no", logging_steps=steps, disable_tqdm=True, dataloader_num_workers=0)
            trainer = DPOTrainer(model=copy.deepcopy(model), args=args, processing_class=tokenizer, train_dataset=data, callbacks=[clock])
            trainer.remove_callback(PrinterCallback)  # its log lines would split the table
            collate = trainer.data_collator

            def measured(examples):
                batch = collate(examples)
                widths.append(batch["input_ids"].shape[1])
                return batch

            trainer.data_collator = measured
            trainer.train()
            loss = next((row["loss"] for row in reversed(trainer.state.log_history) if "loss" in row), float("nan"))
    finally:
        if quiet is None:
            os.environ.pop("TQDM_DISABLE")
        else:
            os.environ["TQDM_DISABLE"] = quiet
    return {"seconds": [b - a for a, b in zip(clock.ends, clock.ends[1:])], "widths": widths, "loss": loss}


def compare(steps: int = 25, warmup: int = 3, rounds: int = 2, batch_size: int = 16, max_length: int = 128, seed: int = 0) -> dict:
    """Per-step seconds of both trainers, pooled over ``rounds`` alternating runs after ``warmup`` steps; prints the table, returns it."""
    import trl

    from rl4lm import profiles
    from rl4lm.rlhf.dpo import preference_triples

    if steps <= warmup + 1:
        raise ValueError(f"steps ({steps}) should exceed warmup + 1 ({warmup + 1}) so that some steps are timed.")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    tokenizer, model = profiles.load_tokenizer("lm"), profiles.load_model("lm")
    threads = profiles.use_tiny_threads()
    triples = preference_triples(profiles.load_dataset("preferences")["train"])
    course_widths = padded_lengths(tokenizer, triples, steps, batch_size, max_length, seed)
    trl_name = f"TRL {trl.__version__}"
    runs = {"course": lambda s: course_run(model, tokenizer, triples, steps, batch_size, max_length, s),
            trl_name: lambda s: trl_run(model, tokenizer, triples, steps, batch_size, max_length, s, precompute=True),
            f"{trl_name}, ref each step": lambda s: trl_run(model, tokenizer, triples, steps, batch_size, max_length, s, precompute=False)}
    pooled = {name: [] for name in runs}
    last = {}
    print(f"DPO step on the {profiles.current_profile()} LM: {batch_size} preference pairs ({2 * batch_size} sequences) per step, "
          f"<= {max_length} tokens, beta {BETA}; {threads} torch thread(s), cores={os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f} before", flush=True)
    for r in range(rounds):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in order:
            last[name] = runs[name](seed)
            pooled[name] += last[name]["seconds"][warmup:]
    same = all(last[name]["widths"] == course_widths for name in runs if name != "course")
    print(f"{'':<26} {'s/step':>7} {'(min-max)':>13} {'tokens':>7} {'loss':>7}   median of {rounds} x {steps - 1 - warmup} steps")
    table = {}
    for name, seconds in pooled.items():
        widths = last[name].get("widths", course_widths)
        table[name] = {"seconds": statistics.median(seconds), "min": min(seconds), "max": max(seconds),
                       "padded_length": statistics.mean(widths), "loss": last[name]["loss"]}
        row = table[name]
        spread = f"({row['min']:.3f}-{row['max']:.3f})"
        print(f"{name:<26} {row['seconds']:7.3f} {spread:>13} {row['padded_length']:7.1f} {row['loss']:7.4f}")
    ratio = table["course"]["seconds"] / table[trl_name]["seconds"]
    ratio_default = table["course"]["seconds"] / table[f"{trl_name}, ref each step"]["seconds"]
    print(f"same batches (padded lengths) in every run: {same}")
    print(f"course / TRL seconds per step (medians): {ratio:.2f} with precomputed reference log-probs (goal <= 1), "
          f"{ratio_default:.2f} against TRL's default; load average {os.getloadavg()[0]:.1f} after")
    return {"threads": threads, "runs": table, "ratio": ratio, "ratio_trl_default": ratio_default, "same_batches": same}


def main(argv: list[str] | None = None) -> None:
    """Command line for :func:`compare`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=25, help="steps per run (default: 25)")
    parser.add_argument("--warmup", type=int, default=3, help="steps dropped at the start of each run (default: 3)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each trainer, alternating which goes first (default: 2)")
    parser.add_argument("--batch-size", type=int, default=16, help="preference pairs per step (default: 16)")
    parser.add_argument("--max-length", type=int, default=128, help="tokens per prompt + response at most (default: 128)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    compare(args.steps, args.warmup, args.rounds, args.batch_size, args.max_length)


if __name__ == "__main__":
    main()
