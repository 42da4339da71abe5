"""Session 1 lecture script: next-token probabilities and per-token surprisal of the profile's LM.

    python code/lectures/s01_next_token.py --prompt "this comedy was" --top 10
    RL4LM_PROFILE=full python code/lectures/s01_next_token.py --prompt "The movie was"

A bad value (an empty prompt, --top beyond the vocabulary, a text longer than the model's context) is one line
on stderr and exit status 2. Nothing is random: the same options print the same numbers.
"""
from __future__ import annotations

import math

import torch

from rl4lm import profiles
from rl4lm.labs import Parser, context_length, run_main
from rl4lm.lm import decoding, logprobs


def top_next_tokens(model, tokenizer, prompt: str, top: int) -> list[tuple[str, float]]:
    """The ``top`` most likely next tokens after ``prompt`` with P(w | prompt) (Session 1, causal LM)."""
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    probs = torch.softmax(decoding.next_token_logits(model, ids)[0], dim=-1)
    values, indices = probs.topk(top)
    return [(tokenizer.decode(int(i)), float(v)) for v, i in zip(values, indices)]


def token_surprisals(model, tokenizer, text: str) -> list[tuple[str, float]]:
    """Surprisal -log2 P(w_t | w_<t) of every token after the first, in bits (Session 1)."""
    ids = tokenizer(text, return_tensors="pt").input_ids
    bits = -logprobs.token_log_probs(model, ids)[0] / math.log(2)
    return [(tokenizer.decode(int(t)), float(b)) for t, b in zip(ids[0, 1:], bits)]


def parser() -> Parser:
    """The command line: every option with its help text."""
    cli = Parser(__doc__)
    cli.add_argument("--prompt", default="this comedy was",
                     help="text after which the next-token distribution P(w | prompt) is printed (not empty)")
    cli.add_argument("--text", default="this comedy was brilliant . i loved the acting .",
                     help="text whose tokens' surprisal -log2 P(w_t | w_<t) is printed (at least two tokens)")
    cli.add_argument("--top", type=int, default=10,
                     help="how many of the most likely next tokens to print (from 1 to the vocabulary size)")
    return cli


def main(argv: list[str] | None = None) -> None:
    """Print the next-token distribution after a prompt and the surprisal of each token of a text."""
    cli = parser()
    args = cli.parse_args(argv)
    for option, value in (("--prompt", args.prompt), ("--text", args.text)):
        if not value.strip():
            cli.error(f"{option} is empty: give it some text, e.g. {option} \"this comedy was\"")
    if args.top < 1:
        cli.error(f"--top must be at least 1, not {args.top}")
    profiles.describe_profile()
    tokenizer, model = profiles.load_tokenizer("lm"), profiles.load_model("lm")
    vocabulary, context = model.config.vocab_size, context_length(model)
    if args.top > vocabulary:
        cli.error(f"--top {args.top} is more than the vocabulary of the model ({vocabulary} tokens)")
    for option, value in (("--prompt", args.prompt), ("--text", args.text)):
        length = len(tokenizer(value).input_ids)
        if context is not None and length > context:
            cli.error(f"{option} has {length} tokens, more than the model's context of {context}")
    if len(tokenizer(args.text).input_ids) < 2:
        cli.error(f"--text {args.text!r} is a single token; surprisal needs at least two (the first token has no prefix)")
    print(f"\nP(next token | {args.prompt!r}):")
    for token, p in top_next_tokens(model, tokenizer, args.prompt, args.top):
        print(f"  {token!r:>16} {p:6.3f} {'#' * round(60 * p)}")
    print(f"\nsurprisal of {args.text!r} (bits):")
    for token, bits in token_surprisals(model, tokenizer, args.text):
        print(f"  {token!r:>16} {bits:6.2f}")


if __name__ == "__main__":
    run_main(main)
