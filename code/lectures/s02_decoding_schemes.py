"""Session 2 lecture script: the same prompt continued with every decoding scheme, side by side.

    python code/lectures/s02_decoding_schemes.py --prompt "this thriller was" --new-tokens 20
    python code/lectures/s02_decoding_schemes.py --seed 1    # other samples; the same seed prints the same text

Each continuation stops at the end-of-text token (marked [end of text]) or after --new-tokens tokens. Greedy
decoding and sampling stop generating there; beam search ranks its beams over all --new-tokens steps and its
best beam is then cut after its first end-of-text token. The log-likelihood per token counts the new tokens up to
and including the end-of-text token. A bad value (--new-tokens 0, an empty prompt, a prompt and continuation
longer than the model's context) is one line on stderr and exit status 2.
"""
from __future__ import annotations

import torch

from rl4lm import profiles
from rl4lm.labs import Parser, context_length, run_main
from rl4lm.lm import decoding, logprobs

MAX_SEED = 2**63 - 1  # torch generators take 64-bit seeds


def until_eos(extend, ids: torch.Tensor, new_tokens: int, eos_token_id: int | None) -> torch.Tensor:
    """Apply ``extend`` (ids (1, seq) -> ids (1, seq + 1)) until ``new_tokens`` tokens or the end-of-text token."""
    for _ in range(new_tokens):
        ids = extend(ids)
        if eos_token_id is not None and ids[0, -1].item() == eos_token_id:
            break
    return ids


def cut_after_eos(ids: torch.Tensor, prompt_len: int, eos_token_id: int | None) -> torch.Tensor:
    """The prompt and the new tokens up to and including the first end-of-text token, (1, seq')."""
    new = decoding.cut_at_eos(ids[:, prompt_len:].tolist(), eos_token_id)[0]
    return torch.cat([ids[:, :prompt_len], torch.tensor([new], dtype=ids.dtype, device=ids.device)], dim=-1)


def continue_with_every_scheme(model, ids: torch.Tensor, new_tokens: int, seed: int,
                               eos_token_id: int | None = None) -> dict[str, torch.Tensor]:
    """Continuations of one prompt ``ids`` (1, seq) under greedy, beam search, pure, temperature, top-k and top-p sampling.

    Each stops at ``eos_token_id`` (Holtzman et al., 2020 compare the same schemes).
    """
    def sampled(**kwargs) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)  # the same random numbers for every sampling scheme
        step = lambda prefix: decoding.sample(model, prefix, 1, generator=generator, **kwargs)  # noqa: E731
        return until_eos(step, ids, new_tokens, eos_token_id)

    beam = decoding.beam_search(model, ids, 4, new_tokens)
    return {
        "greedy": until_eos(lambda prefix: decoding.greedy_decode(model, prefix, 1), ids, new_tokens, eos_token_id),
        "beam search (4 beams)": cut_after_eos(beam, ids.shape[1], eos_token_id),
        "pure sampling": sampled(),
        "temperature 0.5": sampled(temperature=0.5),
        "temperature 2.0": sampled(temperature=2.0),
        "top-k (k = 5)": sampled(top_k=5),
        "top-p (p = 0.8)": sampled(top_p=0.8),
    }


def parser() -> Parser:
    """The command line: every option with its help text."""
    cli = Parser(__doc__)
    cli.add_argument("--prompt", default="this comedy was", help="text that every scheme continues (not empty)")
    cli.add_argument("--new-tokens", type=int, default=20,
                     help="most new tokens per continuation (at least 1); a continuation stops earlier at the end-of-text token")
    cli.add_argument("--seed", type=int, default=0,
                     help=f"seed of the sampling schemes (0 to {MAX_SEED}); the same seed prints the same continuations")
    return cli


def main(argv: list[str] | None = None) -> None:
    """Print one continuation per decoding scheme with its length and log-likelihood per token."""
    cli = parser()
    args = cli.parse_args(argv)
    if not args.prompt.strip():
        cli.error('--prompt is empty: give it some text to continue, e.g. --prompt "this comedy was"')
    if args.new_tokens < 1:
        cli.error(f"--new-tokens must be at least 1, not {args.new_tokens}")
    if not 0 <= args.seed <= MAX_SEED:
        cli.error(f"--seed must be between 0 and {MAX_SEED}, not {args.seed}")
    torch.manual_seed(args.seed)  # the only seed: every sampling scheme below draws from a generator seeded with it
    profiles.describe_profile()
    tokenizer, model = profiles.load_tokenizer("lm"), profiles.load_model("lm")
    ids = tokenizer(args.prompt, return_tensors="pt").input_ids
    prompt_len, context = ids.shape[1], context_length(model)
    if context is not None and prompt_len >= context:
        cli.error(f"--prompt has {prompt_len} tokens, which leaves no room in the model's context of {context}: shorten it")
    if context is not None and prompt_len + args.new_tokens > context:
        cli.error(f"the prompt's {prompt_len} tokens and --new-tokens {args.new_tokens} exceed the model's context of "
                  f"{context} tokens; use --new-tokens {context - prompt_len} or less")
    eos = tokenizer.eos_token_id
    print()
    for scheme, out in continue_with_every_scheme(model, ids, args.new_tokens, args.seed, eos).items():
        new = out[0, prompt_len:]
        per_token = logprobs.mean_token_log_likelihood(model, out, prompt_len, eos).item()
        stopped = " [end of text]" if eos is not None and new[-1].item() == eos else ""
        text = tokenizer.decode(new, skip_special_tokens=True)
        print(f"{scheme:<22} {len(new):>3} tokens, log P/token {per_token:6.2f} | {args.prompt}{text}{stopped}")


if __name__ == "__main__":
    run_main(main)
