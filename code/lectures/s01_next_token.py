"""Session 1 lecture script: next-token probabilities and per-token surprisal of the profile's LM.

    python code/lectures/s01_next_token.py --prompt "this comedy was" --top 10
    RL4LM_PROFILE=full python code/lectures/s01_next_token.py --prompt "The movie was"
"""
from __future__ import annotations

import argparse
import math

import torch

from rl4lm import profiles
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


def main() -> None:
    """Print the next-token distribution after a prompt and the surprisal of each token of a text."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompt", default="this comedy was")
    parser.add_argument("--text", default="this comedy was brilliant . i loved the acting .")
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    profiles.describe_profile()
    tokenizer, model = profiles.load_tokenizer("lm"), profiles.load_model("lm")
    print(f"\nP(next token | {args.prompt!r}):")
    for token, p in top_next_tokens(model, tokenizer, args.prompt, args.top):
        print(f"  {token!r:>16} {p:6.3f} {'#' * round(60 * p)}")
    print(f"\nsurprisal of {args.text!r} (bits):")
    for token, bits in token_surprisals(model, tokenizer, args.text):
        print(f"  {token!r:>16} {bits:6.2f}")


if __name__ == "__main__":
    main()
