"""Session 2 lecture script: the same prompt continued with every decoding scheme, side by side.

    python code/lectures/s02_decoding_schemes.py --prompt "this thriller was" --new-tokens 20
"""
from __future__ import annotations

import argparse

import torch

from rl4lm import profiles
from rl4lm.lm import decoding, logprobs


def continue_with_every_scheme(model, ids: torch.Tensor, new_tokens: int, seed: int) -> dict[str, torch.Tensor]:
    """Continuations under greedy, beam search, pure, temperature, top-k and top-p sampling (Holtzman et al., 2020)."""
    def sampled(**kwargs) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)  # the same random numbers for every sampling scheme
        return decoding.sample(model, ids, new_tokens, generator=generator, **kwargs)

    return {
        "greedy": decoding.greedy_decode(model, ids, new_tokens),
        "beam search (4 beams)": decoding.beam_search(model, ids, 4, new_tokens),
        "pure sampling": sampled(),
        "temperature 0.5": sampled(temperature=0.5),
        "temperature 2.0": sampled(temperature=2.0),
        "top-k (k = 5)": sampled(top_k=5),
        "top-p (p = 0.8)": sampled(top_p=0.8),
    }


def main() -> None:
    """Print one continuation per decoding scheme with its log-likelihood per token."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompt", default="this comedy was")
    parser.add_argument("--new-tokens", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    profiles.describe_profile()
    tokenizer, model = profiles.load_tokenizer("lm"), profiles.load_model("lm")
    ids = tokenizer(args.prompt, return_tensors="pt").input_ids
    print()
    for scheme, out in continue_with_every_scheme(model, ids, args.new_tokens, args.seed).items():
        per_token = logprobs.sequence_log_likelihood(model, out, ids.shape[1]).item() / args.new_tokens
        text = tokenizer.decode(out[0, ids.shape[1]:])
        print(f"{scheme:<22} log P/token {per_token:6.2f} | {args.prompt}{text}")


if __name__ == "__main__":
    main()
