"""``make bench``: seconds per GRPO step of the course's trainer (rl4lm.rlhf.grpo) against TRL's GRPOTrainer, same work.

Both train the tiny profile's LM on the course's verifiable task (rl4lm.rlhf.verifiable.default_task) with the same
step: ``prompts_per_step`` prompts, ``group_size`` sampled completions of each (temperature 1, no top-k or top-p), at
most ``max_new_tokens`` new tokens, group-normalised advantages, the reference model's log-probabilities, one Adam
update of the clipped loss with beta = 0.04 (TRL: loss_type="grpo", num_iterations=1, use_bias_correction_kl=False,
which is the course's loss; constant learning rate, no weight decay, gradients clipped at norm 1), on the CPU with one
torch thread each (the tiny profile's setting), TRL offline with report_to="none" and transformers' ``generate`` (no
vLLM). A step's time runs from the end of the previous step to the end of this one (sampling, rewards, reference
pass, update, and whatever bookkeeping each trainer does); the first ``warmup`` steps of each run are dropped, the rest
pooled over ``rounds`` runs whose order alternates, and the medians compared. The mean completion length and the
training reward are printed beside each, since a step's cost grows with the completions' length and the two runs
sample different tokens. Timings are reported, never asserted. Usage: ``python -m rl4lm_book.bench_grpo
[--steps 15] [--warmup 3] [--rounds 2] [--prompts-per-step 8] [--group-size 8] [--max-new-tokens 48]``.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os
import statistics
import tempfile
import time
import warnings

import torch

BETA, CLIP_EPS = 0.04, 0.2


def course_run(model, tokenizer, task, steps: int, prompts_per_step: int, group_size: int, max_new_tokens: int, learning_rate: float,
               seed: int) -> dict:
    """The course's train_grpo for ``steps`` steps (no held-out evaluation between them): seconds of each step after the first."""
    from rl4lm.rlhf.grpo import GRPOConfig, train_grpo

    config = GRPOConfig(steps=steps, prompts_per_step=prompts_per_step, group_size=group_size, max_new_tokens=max_new_tokens,
                        learning_rate=learning_rate, beta=BETA, clip_eps=CLIP_EPS, seed=seed, eval_every=steps)
    history = train_grpo(copy.deepcopy(model), tokenizer, task, config)["history"]
    ends = history["seconds"]
    return {"seconds": [b - a for a, b in zip(ends, ends[1:])], "lengths": history["response_length"][1:], "rewards": history["reward_mean"][1:]}


def trl_run(model, tokenizer, task, steps: int, prompts_per_step: int, group_size: int, max_new_tokens: int, learning_rate: float,
            seed: int) -> dict:
    """TRL's GRPOTrainer with the same step for ``steps`` steps: seconds of each step after the first (between on_step_end calls)."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    class StepClock(TrainerCallback):
        """Records the time at the end of every optimizer step."""

        def __init__(self):
            self.ends = []

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.perf_counter())

    lengths, rewards = [], []

    def reward(prompts, completions, completion_ids, **kwargs):
        scores = task.rewards(prompts, completions)
        lengths.append(sum(len(ids) for ids in completion_ids) / len(completion_ids))
        rewards.append(scores.mean().item())
        return scores.tolist()

    clock = StepClock()
    with tempfile.TemporaryDirectory() as out, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = GRPOConfig(output_dir=out, report_to="none", use_cpu=True, seed=seed, max_steps=steps,
                          per_device_train_batch_size=prompts_per_step * group_size, num_generations=group_size,
                          max_completion_length=max_new_tokens, temperature=1.0, top_k=0, top_p=1.0, learning_rate=learning_rate,
                          lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, beta=BETA,
                          epsilon=CLIP_EPS, loss_type="grpo", num_iterations=1, use_bias_correction_kl=False, save_strategy="no",
                          logging_steps=steps, disable_tqdm=True, dataloader_num_workers=0)
        trainer = GRPOTrainer(model=copy.deepcopy(model), reward_funcs=reward, args=args, processing_class=tokenizer, callbacks=[clock],
                              train_dataset=Dataset.from_list([{"prompt": p} for p in task.train_prompts]))
        with contextlib.redirect_stdout(io.StringIO()):  # the trainer's printed log dicts would split the table
            trainer.train()
    return {"seconds": [b - a for a, b in zip(clock.ends, clock.ends[1:])], "lengths": lengths[1:], "rewards": rewards[1:]}


def compare(steps: int = 15, warmup: int = 3, rounds: int = 2, prompts_per_step: int = 8, group_size: int = 8, max_new_tokens: int = 48,
            learning_rate: float = 2e-4, seed: int = 0) -> dict:
    """Per-step seconds of both trainers, pooled over ``rounds`` alternating runs after ``warmup`` steps; prints the table, returns it."""
    import trl

    from rl4lm import profiles
    from rl4lm.rlhf.verifiable import default_task

    if steps <= warmup + 1:
        raise ValueError(f"steps ({steps}) should exceed warmup + 1 ({warmup + 1}) so that some steps are timed.")
    tokenizer, model = profiles.load_tokenizer("lm"), profiles.load_model("lm")
    threads = profiles.use_tiny_threads()
    task = default_task(eval_prompts=8)
    runs = {"course": course_run, f"TRL {trl.__version__}": trl_run}
    pooled = {name: {"seconds": [], "lengths": [], "rewards": []} for name in runs}
    print(f"GRPO step on the {profiles.current_profile()} LM: {prompts_per_step} prompts x {group_size} completions, <= {max_new_tokens} "
          f"new tokens, beta {BETA}; {threads} torch thread(s), cores={os.cpu_count()}, load average {os.getloadavg()[0]:.1f} before",
          flush=True)
    for r in range(rounds):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in order:
            result = runs[name](model, tokenizer, task, steps, prompts_per_step, group_size, max_new_tokens, learning_rate, seed + r)
            for key in pooled[name]:
                pooled[name][key] += result[key][warmup:]
    print(f"{'':<10} {'s/step':>7} {'(min-max)':>13} {'tokens':>7} {'reward':>7}   median of {rounds} x {steps - 1 - warmup} steps")
    table = {}
    for name, p in pooled.items():
        table[name] = {"seconds": statistics.median(p["seconds"]), "min": min(p["seconds"]), "max": max(p["seconds"]),
                       "completion_tokens": statistics.mean(p["lengths"]), "reward": statistics.mean(p["rewards"])}
        row = table[name]
        spread = f"({row['min']:.2f}-{row['max']:.2f})"
        print(f"{name:<10} {row['seconds']:7.3f} {spread:>13} {row['completion_tokens']:7.1f} {row['reward']:7.2f}")
    course, theirs = (table[name]["seconds"] for name in runs)
    ratio = course / theirs
    print(f"course / TRL seconds per step (medians): {ratio:.2f}  (goal <= 1); load average {os.getloadavg()[0]:.1f} after")
    return {"threads": threads, "runs": table, "ratio": ratio}


def main(argv: list[str] | None = None) -> None:
    """Command line for :func:`compare`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15, help="steps per run (default: 15)")
    parser.add_argument("--warmup", type=int, default=3, help="steps dropped at the start of each run (default: 3)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each trainer, alternating which goes first (default: 2)")
    parser.add_argument("--prompts-per-step", type=int, default=8, help="prompts per step (default: 8)")
    parser.add_argument("--group-size", type=int, default=8, help="completions per prompt (default: 8)")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="longest completion (default: 48)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    compare(args.steps, args.warmup, args.rounds, args.prompts_per_step, args.group_size, args.max_new_tokens)


if __name__ == "__main__":
    main()
