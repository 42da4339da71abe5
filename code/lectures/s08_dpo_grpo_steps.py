"""Session 8 lecture script: a few DPO steps on a handful of preference pairs, then a few GRPO steps on a handful of prompts.

    python code/lectures/s08_dpo_grpo_steps.py                                  # both: DPO on 4 pairs, GRPO on 2 prompts
    python code/lectures/s08_dpo_grpo_steps.py --method dpo --pairs 8 --steps 10 --beta 0.5
    python code/lectures/s08_dpo_grpo_steps.py --method grpo --prompts 3 --group 6 --steps 6
    python code/lectures/s08_dpo_grpo_steps.py --seed 1    # other pairs, prompts and samples; the same seed prints the same numbers

DPO (rl4lm.rlhf.dpo.train_dpo; Rafailov et al., 2023). --pairs (prompt, chosen, rejected) triples are drawn by --seed
from the train split of the "preferences" data set; the policy starts as the --model role and the reference is a
frozen copy of it. Every optimizer step (AdamW) takes all the pairs as its batch. Per step the script prints the DPO
loss of the batch before the update, then, on the same pairs after the update, the mean implicit reward margin
beta [(log pi - log pi_ref)(y_w) - (log pi - log pi_ref)(y_l)] and the accuracy of the implicit rewards (the share of
pairs whose margin is positive; both are 0 at step 0, where the policy is the reference). It ends with each pair's
change of log pi(y_w | x) and log pi(y_l | x): the margin can grow while both log-probabilities fall.

GRPO (rl4lm.rlhf.grpo; Shao et al., 2024). The reward is the course's verifiable rule (rl4lm.rlhf.verifiable.default_task:
continue a review's first sentence in exactly two more sentences; reward 1 or 0). --prompts openings are drawn by
--seed from the task's train prompts; every step samples a group of --group completions of each (temperature 1, at
most --new-tokens tokens), scores them, turns the rewards into group-normalised advantages (grpo_advantages: zero mean
in every group, all 0 in a group whose rewards are equal) and takes one grpo_step: the clipped ratio and the k3 KL to
the frozen starting model, weighted by --kl-beta, with Adam. The first step's groups are printed completion by
completion, then each step's loss, mean reward and k3 KL (measured on that step's samples, so 0 at step 1), then the
last step's groups.

Tiny profile (the default on a CPU): the 0.3M-parameter GPT-2 of synthetic reviews, the synthetic preference triples
(the more positive continuation is chosen) and the synthetic reviews' openings; the defaults take a few seconds on one
CPU core. There, with seeds 0 to 2, the DPO margin grew at every step and every pair's implicit reward ranked y_w first
after the first step, and GRPO's mean reward rose from under 0.4 at step 1 to 0.8 or more at step 5 (a handful of
samples: another seed may wobble). The learning rates are higher than the labs' (code/labs/dpo.py, code/labs/grpo.py),
so that five steps show a change. Full profile: the same code on the roles' hub assets, not measured here: GPT-2 small
("lm", 124M parameters; an estimate of a second or less per step on a Colab T4), UltraFeedback pairs
(trl-lib/ultrafeedback_binarized; pairs whose prompt takes more than half of 512 tokens are skipped, longer responses
lose their end) and IMDB openings. --model pipeline_sft and the other pipeline roles are OLMo 2 1B: trained in float32
with Adam, the policy, its reference and the optimizer's state take over 25 GB, more than a T4 has (the script then
says so in one line). A bad value (--pairs 0, --group 1, --steps 0, --beta 0) is one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import math

from rl4lm.assets.roles import PIPELINE_ROLES
from rl4lm.labs import Parser, run_main, start_lecture

MAX_SEED = 2**63 - 1  # torch generators take 64-bit seeds
MAX_PAIRS, MAX_PROMPTS, MAX_GROUP, MAX_STEPS, MAX_NEW_TOKENS = 64, 16, 32, 200, 256
MAX_LENGTH = 512  # DPO: tokens per prompt + response (capped at the model's positions by train_dpo)
SHOWN_CHARS = 100  # a GRPO completion longer than this is cut on screen (its sentence ends are counted in full)
DPO_LR, GRPO_LR = 3e-4, 1e-3  # the --lr of each method when not given: above the labs' (3e-5, 2e-4), so that five steps show a change


def parser() -> Parser:
    """The command line: every option with its help text."""
    cli = Parser(__doc__)
    cli.add_argument("--method", choices=("dpo", "grpo", "both"), default="both",
                     help="which steps to run: DPO on preference pairs, GRPO on sampled groups, or DPO then GRPO")
    cli.add_argument("--model", choices=("lm", *PIPELINE_ROLES), default="lm",
                     help="model role the policy starts from (the reference is a frozen copy of it)")
    cli.add_argument("--steps", type=int, default=5,
                     help=f"optimizer steps of each method (1 to {MAX_STEPS}); DPO: all pairs per step, GRPO: one batch of groups")
    cli.add_argument("--lr", type=float, default=argparse.SUPPRESS,
                     help=f"learning rate, positive (default: {DPO_LR:g} for DPO's AdamW, {GRPO_LR:g} for GRPO's Adam)")
    cli.add_argument("--seed", type=int, default=0,
                     help=f"seed of the pairs, prompts and samples drawn and of torch (0 to {MAX_SEED}); the same seed prints "
                          "the same numbers")
    dpo = cli.add_argument_group("DPO")
    dpo.add_argument("--pairs", type=int, default=4,
                     help=f"preference pairs (prompt, chosen, rejected) that DPO trains on, 1 to {MAX_PAIRS}")
    dpo.add_argument("--beta", type=float, default=0.1,
                     help="DPO's beta, positive: the implicit reward is beta log pi(y|x) / pi_ref(y|x)")
    grpo = cli.add_argument_group("GRPO")
    grpo.add_argument("--prompts", type=int, default=2, help=f"review openings that GRPO samples groups for, 1 to {MAX_PROMPTS}")
    grpo.add_argument("--group", type=int, default=8,
                      help=f"completions sampled per prompt and step, 2 to {MAX_GROUP} (a group needs a spread of rewards)")
    grpo.add_argument("--kl-beta", type=float, default=0.04,
                      help="weight of the k3 KL to the starting model in GRPO's loss, 0 or more")
    grpo.add_argument("--new-tokens", type=int, default=48,
                      help=f"most new tokens per GRPO completion (1 to {MAX_NEW_TOKENS}); a completion stops earlier at end-of-text")
    return cli


def checked_arguments(cli: Parser, argv: list[str] | None) -> argparse.Namespace:
    """The parsed options; a bad value exits with one sentence."""
    args = cli.parse_args(argv)
    for name, value, least, most in (("--steps", args.steps, 1, MAX_STEPS), ("--pairs", args.pairs, 1, MAX_PAIRS),
                                     ("--prompts", args.prompts, 1, MAX_PROMPTS), ("--group", args.group, 2, MAX_GROUP),
                                     ("--new-tokens", args.new_tokens, 1, MAX_NEW_TOKENS), ("--seed", args.seed, 0, MAX_SEED)):
        if not least <= value <= most:
            why = " (a group needs at least two completions to have a spread)" if name == "--group" and value < 2 else ""
            cli.error(f"{name} must be between {least} and {most}, not {value}{why}")
    if not 0 < args.beta < math.inf:
        cli.error(f"--beta must be positive and finite (it scales the implicit reward beta log pi / pi_ref), not {args.beta}")
    if not 0 <= args.kl_beta < math.inf:
        cli.error(f"--kl-beta must be 0 or more and finite, not {args.kl_beta}")
    if hasattr(args, "lr") and not 0 < args.lr <= 1:
        cli.error(f"--lr must be positive and at most 1, not {args.lr}")
    return args


def short_prompt_triples(rows, tokenizer, count: int, longest_prompt: int) -> list[tuple[str, str, str]]:
    """The first ``count`` (x, y_w, y_l) of ``rows`` whose prompt x has at most ``longest_prompt`` tokens.

    A row that :func:`rl4lm.rlhf.dpo.preference_triples` refuses (identical or empty responses) is skipped like a long one.
    """
    from rl4lm.rlhf.dpo import preference_triples

    kept = []
    for row in rows:
        try:
            triple = preference_triples([row], tokenizer)[0]
        except ValueError:
            continue
        if len(tokenizer(triple[0])["input_ids"]) <= longest_prompt:
            kept.append(triple)
            if len(kept) == count:
                break
    return kept


def dpo_steps(args: argparse.Namespace, device: str) -> None:
    """Train a copy of the policy on --pairs pairs for --steps steps; print loss, margin and accuracy per step, then each pair's change."""
    import copy

    import torch

    from rl4lm import labs, profiles
    from rl4lm.rlhf.dpo import DPOConfig, reference_logps, tokenize_triples, train_dpo

    lr = getattr(args, "lr", DPO_LR)
    tokenizer = profiles.load_tokenizer(args.model)
    policy = profiles.load_model(args.model).to(device)
    reference = copy.deepcopy(policy).eval().requires_grad_(False)  # frozen: log pi_ref never changes
    train = profiles.load_dataset("preferences")["train"]
    order = torch.randperm(train.num_rows, generator=torch.Generator().manual_seed(args.seed)).tolist()
    triples = short_prompt_triples(train.select(order[:8 * args.pairs]), tokenizer, args.pairs, MAX_LENGTH // 2)
    if len(triples) < args.pairs:
        raise ValueError(f"only {len(triples)} of the {8 * args.pairs} drawn pairs are usable (two different responses, a prompt "
                         f"of at most {MAX_LENGTH // 2} tokens); ask for --pairs {max(len(triples), 1)} or try another --seed")
    config = DPOConfig(steps=args.steps, batch_size=args.pairs, learning_rate=lr, beta=args.beta, max_length=MAX_LENGTH,
                       eval_every=1, seed=args.seed)
    print(f"\nDPO on {args.pairs} preference pair{'s' if args.pairs > 1 else ''} (every pair in every step), beta {args.beta:g}, AdamW lr {lr:g}, "
          f"{args.steps} steps; policy: {args.model}, reference: a frozen copy of it")
    print("loss: the pairs' DPO loss before the step; margin, accuracy: mean implicit reward margin "
          "beta [(log pi - log pi_ref)(y_w) - (log pi - log pi_ref)(y_l)] and share of pairs with margin > 0, after the step")
    result = train_dpo(policy, tokenizer, triples, config, reference=reference, eval_triples=triples)
    history, evals = result["history"], result["eval"]
    labs.log(0, margin=evals["eval_margin"][0], accuracy=evals["eval_accuracy"][0])
    for i, step in enumerate(history["step"]):
        labs.log(step, loss=history["loss"][i], margin=evals["eval_margin"][i + 1], accuracy=evals["eval_accuracy"][i + 1])
    examples = tokenize_triples(tokenizer, triples)
    pad, length = tokenizer.pad_token_id, min(MAX_LENGTH, labs.context_length(policy) or MAX_LENGTH)  # train_dpo's cap too
    ref_chosen, ref_rejected = reference_logps(reference, examples, pad, max_length=length)  # (pairs,) each
    new_chosen, new_rejected = reference_logps(policy, examples, pad, max_length=length)  # the trained policy's, no gradient
    print(f"\nafter {args.steps} steps, per pair: change of log pi(y|x) from the reference's, and the implicit reward margin")
    print("pair  d log pi(y_w|x)  d log pi(y_l|x)   margin  prompt | chosen y_w | rejected y_l")
    for i, (x, y_w, y_l) in enumerate(triples):
        d_w, d_l = (new_chosen[i] - ref_chosen[i]).item(), (new_rejected[i] - ref_rejected[i]).item()
        print(f"{i + 1:>4}  {d_w:>+15.3f}  {d_l:>+15.3f}  {args.beta * (d_w - d_l):>+7.3f}  "
              f"{x[-40:]!r} | {y_w[:50]!r} | {y_l[:50]!r}")


def sampled_groups(policy, tokenizer, task, prompts: list[str], args: argparse.Namespace, generator):
    """One batch: each prompt's group of --group samples, their rewards (N,) and advantages (N,), N = prompts x group."""
    from rl4lm.lm.rollout import sample_rollout
    from rl4lm.rlhf.grpo import grpo_advantages

    rows = [prompt for prompt in prompts for _ in range(args.group)]  # groups of consecutive copies, as train_grpo lays them out
    rollout = sample_rollout(policy, tokenizer, rows, args.new_tokens, generator=generator)
    completions = rollout.texts(tokenizer)
    rewards = task.rewards(rows, completions)  # (N,) 0 or 1
    return rollout, completions, rewards, grpo_advantages(rewards, args.group)


def print_groups(prompts: list[str], completions: list[str] | None, rewards, advantages, group: int) -> None:
    """Each group's rewards and advantages, completion by completion when ``completions`` are given, else on one line.

    A completion's line shows the number the rule counts (rl4lm.rlhf.verifiable.sentence_ends), so that a reward can be
    checked by eye even where the text is cut for the screen.
    """
    from rl4lm.rlhf.verifiable import sentence_ends

    for g, prompt in enumerate(prompts):
        r, a = rewards[g * group:(g + 1) * group].tolist(), advantages[g * group:(g + 1) * group].tolist()
        equal = "; all rewards equal, so no gradient from this group" if len(set(r)) == 1 else ""
        print(f"group {g + 1}: {prompt!r}: mean reward {sum(r) / group:.3f}, mean advantage {sum(a) / group:+.3f}{equal}")
        if completions is None:
            print("  rewards    " + " ".join(f"{x:6.0f}" for x in r) + "\n  advantages " + " ".join(f"{x:+6.3f}" for x in a))
            continue
        for reward, advantage, text in zip(r, a, completions[g * group:(g + 1) * group]):
            shown = repr(text) if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]!r} ..."
            print(f"  reward {reward:.0f}  sentence ends {sentence_ends(text)}  advantage {advantage:+.3f}  {shown}")


def grpo_steps(args: argparse.Namespace, device: str) -> None:
    """--steps GRPO steps on --prompts prompts: print the first step's groups, each step's loss, reward and KL, the last step's groups."""
    import copy

    import torch

    from rl4lm import labs, profiles
    from rl4lm.rlhf.grpo import GRPOConfig, grpo_step, sampled_token_logprobs
    from rl4lm.rlhf.verifiable import default_task

    lr = getattr(args, "lr", GRPO_LR)
    config = GRPOConfig(steps=args.steps, prompts_per_step=args.prompts, group_size=args.group, max_new_tokens=args.new_tokens,
                        learning_rate=lr, beta=args.kl_beta, seed=args.seed)
    tokenizer = profiles.load_tokenizer(args.model)
    policy = profiles.load_model(args.model).to(device)
    reference = copy.deepcopy(policy).eval().requires_grad_(False)  # the starting model that the KL is measured to
    task = default_task(eval_prompts=1)
    picked = torch.randperm(len(task.train_prompts), generator=torch.Generator().manual_seed(args.seed))[:args.prompts]
    prompts = [task.train_prompts[i] for i in picked.tolist()]
    sampler = torch.Generator(device=device).manual_seed(args.seed)
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
    print(f"\nGRPO on {args.prompts} prompt{'s' if args.prompts > 1 else ''} x groups of {args.group} samples, "
          f"KL weight {args.kl_beta:g}, Adam lr {lr:g}, {args.steps} steps; policy: {args.model}, reference: a frozen copy of it")
    print(f"reward 1 if the completion follows the rule, else 0; the rule: {task.rule}")
    for step in range(1, args.steps + 1):
        rollout, completions, rewards, advantages = sampled_groups(policy, tokenizer, task, prompts, args, sampler)
        if step == 1:
            print("\nstep 1's groups, before its update: advantage = (reward - group mean) / (group std + 1e-4)")
            print_groups(prompts, completions, rewards, advantages, args.group)
            print("\nloss: GRPO's loss on the step's samples (about 0: the ratio is 1 and every group's advantages have mean 0, "
                  "but its gradient is not 0); reward_mean: the samples' mean reward; kl: their mean k3 KL to the reference")
        with torch.no_grad():
            ref_logp = sampled_token_logprobs(reference, rollout, config.temperature)  # (N, new)
        metrics = grpo_step(policy, optimizer, rollout, ref_logp, advantages.to(device), config)
        labs.log(step, loss=metrics["loss"], reward_mean=rewards.mean().item(), kl=metrics["kl"])
    if args.steps > 1:
        print(f"\nstep {args.steps}'s groups, before its update")
        print_groups(prompts, None, rewards, advantages, args.group)


def main(argv: list[str] | None = None) -> None:
    """Run the DPO steps, the GRPO steps, or both, printing every number a lecture points at."""
    cli = parser()
    args = checked_arguments(cli, argv)
    device = start_lecture(args.seed)
    import torch

    try:
        if args.method in ("dpo", "both"):
            dpo_steps(args, device)
        if args.method in ("grpo", "both"):
            grpo_steps(args, device)
    except ValueError as error:  # a setting the package refuses (a prompt beyond the context, too few short pairs): one line
        cli.error(str(error).rstrip(".").replace("max_new_tokens", "--new-tokens"))
    except torch.OutOfMemoryError:  # e.g. an OLMo 2 1B stage on a T4: policy, reference and Adam's state do not fit
        cli.error(f"--model {args.model} does not fit the GPU's memory next to its frozen reference and Adam's state (over 25 GB "
                  "for an OLMo 2 1B stage in float32); use --model lm, or a GPU with more memory")


if __name__ == "__main__":
    run_main(main)
