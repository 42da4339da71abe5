"""Session 4 lecture script: train a reward model on preference pairs, then score sampled continuations of review
openings with it and with the sentiment classifier, side by side.

    python code/lectures/s04_reward_scores.py
    python code/lectures/s04_reward_scores.py --prompt "this thriller was" --samples 12 --new-tokens 30
    python code/lectures/s04_reward_scores.py --rm-pairs 64     # a reward model trained on fewer pairs ranks worse
    python code/lectures/s04_reward_scores.py --scorer classifier   # no training: the classifier's scores only
    python code/lectures/s04_reward_scores.py --seed 1    # other samples and head; the same seed prints the same output

Two rewards score the same samples. The learned reward r_phi(x, y) is trained as Session 4's page trains it: the
profile's LM with a scalar head (rl4lm.rlhf.reward_model.load_reward_model), fitted for one epoch with the
Bradley-Terry loss (train_reward_model) on the first --rm-pairs (chosen, rejected) pairs of the "preferences" data
(tiny: synthetic reviews, the more positive continuation chosen; full: UltraFeedback) with the page's settings
(tiny: batches of 16 pairs, learning rate 1e-4; full: batches of 8, 1e-5). One line reports its preference accuracy
on held-out pairs (the first 300 test pairs in tiny, 500 in full) before and after training. The second score is
the reward the course's RL stages maximise, P(positive | x), the sentiment classifier's probability that the text is
a positive review (rl4lm.rlhf.rewards.sentiment_reward; full: DistilBERT fine-tuned on IMDB, tiny: the project's
2-layer classifier). Each --prompt is continued --samples times by the LM ("lm" role: GPT-2 in full, the tiny GPT-2
in tiny) with seeded sampling at temperature 1, up to --new-tokens tokens or its end-of-text token. The samples are
printed from the highest learned reward to the lowest, with both scores, and the two rankings are compared by their
concordance c (rl4lm.analysis.overoptimisation.concordance: the share of sample pairs both scores order the same way,
0.5 for unrelated scores; Kendall's rank correlation tau = 2 c - 1), over all samples and within each prompt: the
Bradley-Terry loss fixes only differences between responses to the same prompt. Where to look: in tiny the reward
model has learned the one distinction its pairs draw, positive or not, so it mostly ranks the samples the classifier
calls positive above the others; the classifier's probabilities sit near 0 or 1, so their order inside each polarity
is close to noise and keeps c well below 1. For the same reason
the mean of P(positive) is little more than the share of positive samples, which each summary line counts (two
prompts with as many positive samples print the same mean). In full r_phi learned UltraFeedback's chat answers, not movie reviews:
expect less agreement.
--scorer classifier skips the training and prints the classifier's scores only.

Time: in tiny the training takes seconds on a CPU. In full it trains GPT-2 small on 2000 pairs of up to 512 tokens
(250 steps of 8 pairs) and scores 500 held-out pairs twice, which needs a GPU: roughly 5 to 10 minutes on a Colab T4
and hours on a CPU (estimates from the model's size and the number of tokens, not measured).
The models are loaded one at a time (the LM samples, then the reward model trains and scores, then the classifier
scores), each freed before the next. A bad value (--samples 0, an empty prompt, --rm-pairs 0 or more than the data
has, a prompt and continuation longer than the model's context) is one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse

from rl4lm.labs import Parser, release_memory, run_main, start_lecture

MAX_SEED = 2**63 - 1  # torch generators take 64-bit seeds
MAX_SAMPLES = 256
DEFAULT_PROMPTS = ["this comedy was", "the new thriller is"]  # review openings that both profiles' LMs continue
RM_PAIRS = {"tiny": 640, "full": 2000}  # training pairs of Session 4's page
RM_HELD_OUT = {"tiny": 300, "full": 500}  # held-out pairs of the page
RM_SETTINGS = {"tiny": dict(batch_size=16, lr=1e-4), "full": dict(batch_size=8, lr=1e-5)}  # the page's train_reward_model settings


def parser() -> Parser:
    """The command line: every option with its help text."""
    cli = Parser(__doc__)
    cli.add_argument("--prompt", action="append", default=argparse.SUPPRESS,
                     help="a review opening the LM continues (not empty); repeat the option for several "
                          f"(default: {' and '.join(repr(p) for p in DEFAULT_PROMPTS)})")
    cli.add_argument("--samples", type=int, default=8,
                     help=f"continuations sampled per prompt (1 to {MAX_SAMPLES}), each scored by the reward(s)")
    cli.add_argument("--new-tokens", type=int, default=24,
                     help="most new tokens per continuation (at least 1); a continuation stops earlier at the end-of-text token")
    cli.add_argument("--scorer", choices=("both", "classifier"), default="both",
                     help="both: train the reward model r_phi and print its score next to the classifier's P(positive); "
                          "classifier: skip the training and print P(positive) only")
    cli.add_argument("--rm-pairs", type=int, default=argparse.SUPPRESS,
                     help="preference pairs the reward model is trained on, from 1 to the size of the training split "
                          f"(default: the page's {RM_PAIRS['tiny']} in tiny, {RM_PAIRS['full']} in full); needs --scorer both")
    cli.add_argument("--seed", type=int, default=0,
                     help=f"seed of the sampled continuations and of the reward model's head and pair order (0 to {MAX_SEED}); "
                          "the same seed prints the same output")
    return cli


def checked_arguments(cli: Parser, argv: list[str] | None) -> argparse.Namespace:
    """The parsed options, with ``rm_pairs`` None for the profile's default; a bad value exits with one sentence."""
    args = cli.parse_args(argv)
    args.prompt = getattr(args, "prompt", DEFAULT_PROMPTS)
    for i, prompt in enumerate(args.prompt):
        if not prompt.strip():
            cli.error(f"--prompt number {i + 1} is empty: give it some text, e.g. --prompt \"this comedy was\"")
    if not 1 <= args.samples <= MAX_SAMPLES:
        cli.error(f"--samples must be between 1 and {MAX_SAMPLES}, not {args.samples}")
    if args.new_tokens < 1:
        cli.error(f"--new-tokens must be at least 1, not {args.new_tokens}")
    args.rm_pairs = getattr(args, "rm_pairs", None)
    if args.rm_pairs is not None and args.scorer == "classifier":
        cli.error("--rm-pairs needs --scorer both: with --scorer classifier no reward model is trained")
    if args.rm_pairs is not None and args.rm_pairs < 1:
        cli.error(f"--rm-pairs must be at least 1, not {args.rm_pairs}: a reward model needs a pair to learn from")
    if not 0 <= args.seed <= MAX_SEED:
        cli.error(f"--seed must be between 0 and {MAX_SEED}, not {args.seed}")
    return args


def preference_splits(cli: Parser, rm_pairs: int | None, tokenizer) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(training pairs, held-out pairs) as (x + y_w, x + y_l) texts, the page's numbers unless --rm-pairs says; refuses too many."""
    from rl4lm import profiles
    from rl4lm.rlhf.reward_model import preference_pairs

    profile, data = profiles.current_profile(), profiles.load_dataset("preferences")
    available = data["train"].num_rows
    if rm_pairs is not None and rm_pairs > available:
        cli.error(f"--rm-pairs {rm_pairs} is more than the {available} training pairs of the preferences data; use {available} or less")
    n_train = rm_pairs if rm_pairs is not None else min(RM_PAIRS[profile], available)
    n_test = min(RM_HELD_OUT[profile], data["test"].num_rows)
    return (preference_pairs(data["train"].select(range(n_train)), tokenizer),
            preference_pairs(data["test"].select(range(n_test)), tokenizer))


def sampled_continuations(cli: Parser, args: argparse.Namespace, device: str) -> list[str]:
    """Each prompt followed by its continuation, --samples per prompt, seeded sampling at temperature 1; the LM is freed on return."""
    import torch

    from rl4lm import profiles
    from rl4lm.labs import context_length
    from rl4lm.lm.rollout import sample_rollout

    tokenizer, policy = profiles.load_tokenizer("lm"), profiles.load_model("lm", dtype=profiles.inference_dtype(device)).to(device)
    longest, context = max(len(tokenizer(prompt)["input_ids"]) for prompt in args.prompt), context_length(policy)
    if context is not None and longest >= context:
        cli.error(f"the longest prompt has {longest} tokens, which leaves no room in the model's context of {context} tokens: shorten it")
    if context is not None and longest + args.new_tokens > context:
        cli.error(f"the longest prompt has {longest} tokens, which with --new-tokens {args.new_tokens} exceeds the model's "
                  f"context of {context} tokens; use --new-tokens {context - longest} or less")
    rows = [prompt for prompt in args.prompt for _ in range(args.samples)]
    generator = torch.Generator(device=device).manual_seed(args.seed)  # as rl4lm.rlhf.lm_policy_gradient.sample_and_score
    return sample_rollout(policy, tokenizer, rows, args.new_tokens, generator=generator).full_texts(tokenizer)


def learned_reward_scores(train_pairs, test_pairs, texts: list[str], seed: int, device: str) -> list[float]:
    """r_phi(x, y) of each text under a reward model fitted to the pairs with the Bradley-Terry loss (Ouyang et al., 2022, eq. 1).

    Prints one line: the held-out preference accuracy before and after training. The reward model is freed on return.
    """
    from rl4lm import profiles
    from rl4lm.rlhf import reward_model

    tokenizer = profiles.load_tokenizer("lm")
    rm = reward_model.load_reward_model("lm", seed=seed).to(device)  # float32: it is trained
    settings = RM_SETTINGS[profiles.current_profile()]
    before = reward_model.preference_accuracy(rm, tokenizer, test_pairs)
    history = reward_model.train_reward_model(rm, tokenizer, train_pairs, seed=seed, eval_pairs=test_pairs, **settings)
    print(f"\nreward model r_phi: held-out preference accuracy {before:.3f} before, {history['eval_accuracy'][-1]:.3f} after "
          f"training on {len(train_pairs)} pairs ({len(history['loss'])} steps of batch {settings['batch_size']}, "
          f"lr {settings['lr']:g}, {history['seconds']:.0f} s); {len(test_pairs)} held-out pairs")
    score = reward_model.reward_model_scorer(rm, tokenizer)  # texts cross from the LM; r_phi reads them with its own tokenizer
    return score(texts).tolist()  # (n,)


def classifier_scores(texts: list[str], device: str) -> list[float]:
    """P(positive | x) of each text under the profile's sentiment classifier; the classifier is freed on return."""
    import torch

    from rl4lm import profiles
    from rl4lm.rlhf.rewards import sentiment_reward

    tokenizer = profiles.load_tokenizer("sentiment_classifier")
    classifier = profiles.load_model("sentiment_classifier", dtype=profiles.inference_dtype(device)).to(device)
    with torch.no_grad():  # scoring only: no activations kept for a backward pass
        return sentiment_reward(classifier, tokenizer, texts).tolist()  # (n,)


def print_summary(name: str, scores: list[float], prompts: list[str], samples: int, above: float | None = None) -> None:
    """One line with the scores' mean, min and max over all samples, then one per prompt if there are several.

    With ``above`` (0.5 for P(positive)) each line also counts the samples scored above it: probabilities near 0 or 1
    make the mean little more than that share, so two prompts with as many positive samples print the same mean.
    """
    def stats(own: list[float]) -> str:
        share = "" if above is None else f", above {above:g} in {sum(score > above for score in own)} of {len(own)}"
        return f"mean {sum(own) / len(own):.4f}, min {min(own):.4f}, max {max(own):.4f}{share}"

    print(f"{name} over {len(scores)} samples: {stats(scores)}")
    if len(prompts) > 1:
        for i, prompt in enumerate(prompts):
            print(f"  {prompt!r}: {stats(scores[i * samples:(i + 1) * samples])}")


def print_rank_agreement(learned: list[float], positive: list[float], prompts: list[str], samples: int) -> None:
    """Concordance c of the two rankings of the samples and Kendall's tau = 2 c - 1 (Kendall, 1938), overall and within each prompt."""
    from rl4lm.analysis.overoptimisation import concordance

    def agreement(rows: slice) -> float | None:
        try:  # among the pairs r_phi orders; pairs that P(positive) ties count half
            return concordance(positive[rows], learned[rows])
        except ValueError:  # fewer than two samples, or r_phi ties them all: no pair to agree on
            return None

    overall = agreement(slice(None))
    if overall is None:
        print(f"rank agreement of r_phi and P(positive): undefined over {len(learned)} sample(s), no pair that r_phi orders")
        return
    print(f"rank agreement of r_phi and P(positive) over {len(learned)} samples: concordance {overall:.3f} (share of sample pairs "
          f"both order the same way; 0.5 = unrelated), Kendall's tau {2 * overall - 1:.3f}")
    if len(prompts) > 1 and samples > 1:
        within = [agreement(slice(i * samples, (i + 1) * samples)) for i in range(len(prompts))]
        print("  concordance within each prompt (r_phi is fitted to differences under one prompt): " + ", ".join(
            f"{prompt!r} {'undefined' if c is None else format(c, '.3f')}" for prompt, c in zip(prompts, within)))


def main(argv: list[str] | None = None) -> None:
    """Print every sampled continuation with its learned reward and P(positive), highest learned reward first, and summaries."""
    cli = parser()
    args = checked_arguments(cli, argv)
    from rl4lm import profiles  # imported after the options are checked: --help and a refusal answer at once

    device = start_lecture(args.seed)
    both = args.scorer == "both"
    pairs = preference_splits(cli, args.rm_pairs, profiles.load_tokenizer("lm")) if both else None  # refuses before any model loads
    texts = sampled_continuations(cli, args, device)
    release_memory(device)
    learned = learned_reward_scores(*pairs, texts, args.seed, device) if both else None
    release_memory(device)
    positive = classifier_scores(texts, device)
    release_memory(device)
    what = ("highest learned reward first; r_phi = the reward model's score (arbitrary units), P(pos) = P(positive) under the "
            "sentiment classifier") if both else "highest reward first; reward = P(positive) under the sentiment classifier"
    print(f"\n{len(texts)} continuations ({args.samples} per prompt, at most {args.new_tokens} new tokens, seed {args.seed}), {what}\n")
    if both:
        print(f"{'r_phi':>8}  P(pos)  prompt and continuation")
        for r, p, text in sorted(zip(learned, positive, texts), key=lambda row: -row[0]):
            print(f"{r:8.4f}  {p:6.4f}  {text}")
    else:
        print(" reward  prompt and continuation")
        for p, text in sorted(zip(positive, texts), key=lambda row: -row[0]):
            print(f"{p:7.4f}  {text}")
    print()
    if both:
        print_summary("r_phi", learned, args.prompt, args.samples)
    print_summary("P(positive)", positive, args.prompt, args.samples, above=0.5)
    if both:
        print_rank_agreement(learned, positive, args.prompt, args.samples)


if __name__ == "__main__":
    run_main(main)
