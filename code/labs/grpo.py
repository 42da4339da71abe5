"""GRPO on a verifiable task (Session 8, Homework 3): the profile's LM learns a format rule that a program checks.

Group relative policy optimisation (rl4lm.rlhf.grpo.train_grpo; Shao et al., 2024): each step samples a group of
completions per prompt, rewards each 1 or 0 by a rule (rl4lm.rlhf.verifiable.default_task: continue a review's first
sentence in exactly two more sentences), uses the group-normalised rewards as advantages and takes the clipped step
with a KL term to the starting model. Tiny profile (the course's 0.3M GPT-2 on synthetic reviews): held-out greedy
accuracy from 0 to 1 in 30 steps, under a minute on 2 CPU cores (about 4 s on one H200). Full profile (GPT-2 small on
IMDB openings): not measured; one step of 8 x 8 completions of 48 tokens took 0.6 s and 5.8 GiB on an H200 with a
randomly initialised GPT-2 small, so a Colab T4 should take a few seconds per step and fit its memory (an estimate).

    python code/labs/grpo.py --seed 0
    python code/labs/grpo.py --steps 60 --beta 0 --num-iterations 2
    RL4LM_PROFILE=full python code/labs/grpo.py --steps 100

Prints step, reward_mean (training accuracy), kl, frac_zero_std and the held-out greedy accuracy every --eval-every
steps, and ends with one JSON line: accuracy_start and accuracy_end (held-out greedy), reward_start and reward_end
(training accuracy of the first and last step), kl (per-token k3 to the start, last step), seconds, steps, seed.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import torch

from rl4lm import labs, profiles
from rl4lm.rlhf.grpo import GRPOConfig, train_grpo
from rl4lm.rlhf.verifiable import default_task

DEFAULTS = {  # per profile; tiny: rl4lm.rlhf.grpo.GRPOConfig's defaults, full: an estimate for GPT-2 small on a T4
    "tiny": dict(steps=30, prompts_per_step=8, group_size=8, max_new_tokens=48, learning_rate=2e-4),
    "full": dict(steps=100, prompts_per_step=8, group_size=8, max_new_tokens=48, learning_rate=1e-5),
}


@dataclass
class Args:
    """GRPO on the verifiable task; unset options take the active profile's defaults."""

    seed: int = labs.arg(0, "seed of the prompt order, of the sampling and of torch")
    steps: int | None = labs.arg(None, "GRPO steps (each: one batch of groups)")
    prompts_per_step: int | None = labs.arg(None, "prompts per step")
    group_size: int | None = labs.arg(None, "completions per prompt, at least 2")
    max_new_tokens: int | None = labs.arg(None, "longest completion in tokens")
    learning_rate: float | None = labs.arg(None, "Adam's learning rate")
    beta: float = labs.arg(GRPOConfig.beta, "weight of the k3 KL to the starting model in the loss")
    clip_eps: float = labs.arg(GRPOConfig.clip_eps, "clipping epsilon of the ratio")
    num_iterations: int = labs.arg(GRPOConfig.num_iterations, "Adam steps on each batch")
    temperature: float = labs.arg(GRPOConfig.temperature, "sampling temperature")
    eval_every: int = labs.arg(GRPOConfig.eval_every, "held-out greedy accuracy every this many steps")
    eval_prompts: int = labs.arg(128, "held-out prompts scored by greedy decoding")


def main(argv: list[str] | None = None) -> dict:
    """Train, log every --eval-every steps, print the results line."""
    args = labs.parse_args(Args, argv, __doc__.splitlines()[0])
    defaults = DEFAULTS[profiles.current_profile()]
    settings = {key: getattr(args, key) if getattr(args, key) is not None else value for key, value in defaults.items()}
    fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    config = GRPOConfig(**{**{k: v for k, v in dataclasses.asdict(args).items() if k in fields}, **settings})
    if args.eval_prompts < 1:
        raise SystemExit("grpo.py: error: --eval-prompts should be at least 1")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = profiles.load_tokenizer("lm")
    policy = copy.deepcopy(profiles.load_model("lm")).to(device)
    task = default_task(eval_prompts=args.eval_prompts)
    print(f"task: {task.rule}; {len(task.train_prompts)} train prompts, {len(task.eval_prompts)} held-out", flush=True)
    try:
        result = train_grpo(policy, tokenizer, task, config)
    except ValueError as error:  # a setting that cannot work: one line, no traceback
        raise SystemExit(f"grpo.py: error: {error}") from None
    history = result["history"]
    accuracy = dict(zip(history["eval_step"], history["eval_accuracy"]))
    for step in history["eval_step"][1:]:
        labs.log(step, reward_mean=history["reward_mean"][step - 1], kl=history["kl"][step - 1],
                 frac_zero_std=history["frac_zero_std"][step - 1], accuracy=accuracy[step])
    for prompt, before, after in zip(result["prompts"][:3], result["samples_before"], result["samples_after"]):
        print(f"{prompt!r}\n  before: {before!r}\n  after:  {after!r}")
    return labs.finish(profile=profiles.current_profile(), task=task.name, accuracy_start=result["accuracy_start"],
                       accuracy_end=result["accuracy_end"], reward_start=history["reward_mean"][0], reward_end=history["reward_mean"][-1],
                       kl=round(history["kl"][-1], 4), seconds=round(result["seconds"], 1), steps=config.steps, seed=config.seed)


if __name__ == "__main__":
    labs.run_main(main)
