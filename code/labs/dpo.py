"""Direct preference optimisation of the profile's language model on its preference pairs (Session 8, Homework 3).

The course's DPO (rl4lm.rlhf.dpo.train_dpo): the policy is the profile's LM, the reference is the same LM frozen
(its log-probabilities computed once, before training), the loss is -log sigma(beta [log pi/pi_ref (y_w) - log
pi/pi_ref (y_l)]) on (prompt, chosen, rejected) triples. Tiny profile (the default): the 0.3M-parameter GPT-2 on
the synthetic review preferences (the more positive continuation is chosen), the settings of the tiny asset
build's "after DPO" model, a few seconds of training on 2 CPU cores. Full profile: GPT-2 small on
trl-lib/ultrafeedback_binarized; its defaults are an estimate for a Colab T4, not measured.

    python code/labs/dpo.py --seed 0
    python code/labs/dpo.py --beta 0.1 --learning-rate 1e-3 --steps 60   # the margin grows, log pi(y_w) falls far
    RL4LM_PROFILE=full python code/labs/dpo.py

Prints the training batch's loss, implicit-reward accuracy and margin and log pi(y_w | x) every --log-every steps,
the held-out metrics at every evaluation, and ends with one JSON line: accuracy_start and accuracy_end (held-out
implicit-reward accuracy, r(x, y_w) > r(x, y_l) strictly, so 0 at the start where every implicit reward is 0),
margin_end (mean held-out r_w - r_l), logp_accuracy_start and logp_accuracy_end (fraction of held-out pairs where
the policy itself finds y_w likelier), chosen_logp_start and chosen_logp_change (mean held-out log pi(y_w | x) and
its change), steps, seed, profile, seconds (the training call, reference pass and evaluations included).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch

from rl4lm import labs, profiles
from rl4lm.rlhf.dpo import PIPELINE_DPO, DPOConfig, preference_triples, train_dpo

DEFAULTS = {  # per profile; unset options take these
    "tiny": dict(steps=PIPELINE_DPO.steps, batch_size=PIPELINE_DPO.batch_size, learning_rate=PIPELINE_DPO.learning_rate,
                 beta=PIPELINE_DPO.beta, max_length=PIPELINE_DPO.max_length, eval_every=10, train_rows=3000, eval_rows=300),
    # GPT-2 small on a Colab T4: beta 0.1 (TRL's default) and a small learning rate; an estimate until measured
    "full": dict(steps=200, batch_size=4, learning_rate=5e-6, beta=0.1, max_length=512, eval_every=50, train_rows=800, eval_rows=200),
}


@dataclass
class Args:
    """DPO on the profile's preference pairs; unset options take the active profile's defaults."""

    seed: int = labs.arg(0, "seed of torch and of the order of the pairs (also picks the training rows)")
    steps: int | None = labs.arg(None, "optimizer steps")
    batch_size: int | None = labs.arg(None, "preference pairs per step")
    learning_rate: float | None = labs.arg(None, "AdamW's learning rate (constant)")
    beta: float | None = labs.arg(None, "DPO's beta: the implicit reward is beta log pi / pi_ref")
    max_length: int | None = labs.arg(None, "tokens per prompt + response; longer ones lose their end")
    eval_every: int | None = labs.arg(None, "held-out evaluation every this many steps (0: before and after only)")
    train_rows: int | None = labs.arg(None, "training rows drawn (shuffled by --seed) from the preference data")
    eval_rows: int | None = labs.arg(None, "held-out rows (the first of the test split)")
    log_every: int = labs.arg(10, "print the training metrics every this many steps")


def settings(args: Args) -> dict:
    """The options given on the command line, the profile's defaults for the others."""
    defaults = DEFAULTS[profiles.current_profile()]
    return {key: getattr(args, key) if getattr(args, key) is not None else value for key, value in defaults.items()}


def fitting(triples: list[tuple[str, str, str]], tokenizer, max_length: int) -> list[tuple[str, str, str]]:
    """The triples whose prompt leaves at least half of ``max_length`` to the responses (TRL drops those it would empty)."""
    lengths = [len(ids) for ids in tokenizer([x for x, _, _ in triples])["input_ids"]]
    return [triple for triple, n in zip(triples, lengths) if n <= max_length // 2]


def main(argv: list[str] | None = None) -> dict:
    """Train, log every --log-every steps, print the results line."""
    args = labs.parse_args(Args, argv, __doc__.splitlines()[0])
    chosen = settings(args)
    if chosen["train_rows"] < 1 or chosen["eval_rows"] < 1 or args.log_every < 1:
        raise SystemExit("dpo.py: error: --train-rows, --eval-rows and --log-every must be at least 1")
    try:
        config = DPOConfig(**{key: chosen[key] for key in ("steps", "batch_size", "learning_rate", "beta", "max_length", "eval_every")},
                           seed=args.seed)
    except ValueError as error:  # a setting that cannot work: one line, before anything is loaded
        raise SystemExit(f"dpo.py: error: {error}") from None
    profiles.use_tiny_threads()
    torch.manual_seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = profiles.load_tokenizer("lm")
    policy = copy.deepcopy(profiles.load_model("lm")).to(device)
    data = profiles.load_dataset("preferences")
    train_rows = data["train"].shuffle(seed=args.seed).select(range(min(chosen["train_rows"], data["train"].num_rows)))
    eval_rows = data["test"].select(range(min(chosen["eval_rows"], data["test"].num_rows)))
    start = time.perf_counter()
    try:
        train = fitting(preference_triples(train_rows, tokenizer), tokenizer, config.max_length)
        held_out = fitting(preference_triples(eval_rows, tokenizer), tokenizer, config.max_length)
        result = train_dpo(policy, tokenizer, train, config, eval_triples=held_out)
    except ValueError as error:  # a setting or a row that cannot work: one line, no traceback
        raise SystemExit(f"dpo.py: error: {error}") from None
    history, evals = result["history"], result["eval"]
    for i in range(0, result["steps"], args.log_every):
        labs.log(history["step"][i], **{key: history[key][i] for key in ("loss", "reward_accuracy", "reward_margin", "chosen_logp")})
    for i, step in enumerate(evals["eval_step"]):
        print(f"held-out after {step:>4d} steps: accuracy {evals['eval_accuracy'][i]:.3f}  margin {evals['eval_margin'][i]:.3f}  "
              f"logp_accuracy {evals['eval_logp_accuracy'][i]:.3f}  chosen_logp {evals['eval_chosen_logp'][i]:.2f}")
    return labs.finish(profile=profiles.current_profile(), seed=args.seed, steps=result["steps"],
                       accuracy_start=round(evals["eval_accuracy"][0], 4), accuracy_end=round(evals["eval_accuracy"][-1], 4),
                       margin_end=round(evals["eval_margin"][-1], 4), logp_accuracy_start=round(evals["eval_logp_accuracy"][0], 4),
                       logp_accuracy_end=round(evals["eval_logp_accuracy"][-1], 4),
                       chosen_logp_start=round(evals["eval_chosen_logp"][0], 3),
                       chosen_logp_change=round(evals["eval_chosen_logp"][-1] - evals["eval_chosen_logp"][0], 3),
                       train_pairs=len(train), eval_pairs=len(held_out), seconds=round(result["seconds"], 1),
                       seconds_total=round(time.perf_counter() - start, 1))


if __name__ == "__main__":
    labs.run_main(main)
