"""``make bench``: tokens per second of the course's KV-cached sampler (:mod:`rl4lm.lm.rollout`) against ``model.generate``.

Both decode the same left-padded prompts (the first words of test reviews, of mixed lengths) for the same number of
new tokens; greedy outputs must be identical, and sampling under the same ``torch.manual_seed`` draws the same tokens,
so both sides run the same number of steps. Reported: median seconds over ``repeat`` interleaved runs (after one
warm-up each), tokens/s (batch x generated positions / seconds) and the ratio to ``generate``. Timings are reported,
never asserted. The full profile's GPT-2 cannot be loaded offline; ``--gpt2-shape`` times a randomly initialised
model of GPT-2 small's shape (124M parameters) instead, which measures the same loop at the real size.
Usage: ``python -m rl4lm_book.bench_sampler [--batch 16] [--new-tokens 48] [--repeat 5] [--gpt2-shape]``.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

METHODS = ("generate greedy", "greedy_rollout", "generate sample", "sample_rollout")


def _gpt2_shaped(vocab_size: int):
    """A randomly initialised GPT-2 small (12 layers, 768 wide), in eval mode: the full profile's LM without its weights."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=max(vocab_size, 50257))).eval()


def _runs(model, tokenizer, prompts: list[str], new_tokens: int, seed: int) -> tuple[dict, int]:
    """One call per method, each returning the full token ids (batch, prompt + generated); and the padded prompt length."""
    from rl4lm.lm.rollout import greedy_rollout, left_padded_prompts, sample_rollout

    ids, mask = left_padded_prompts(tokenizer, prompts, model.device)
    common = dict(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id)

    def seeded(fn):
        def run():
            torch.manual_seed(seed)
            return fn()
        return run

    return ({
        "generate greedy": lambda: model.generate(**common, do_sample=False),
        "greedy_rollout": lambda: greedy_rollout(model, tokenizer, prompts, new_tokens).input_ids,
        # top_k=0: without it generate keeps only the 50 most likely tokens, a different distribution
        "generate sample": seeded(lambda: model.generate(**common, do_sample=True, top_k=0)),
        "sample_rollout": seeded(lambda: sample_rollout(model, tokenizer, prompts, new_tokens).input_ids),
    }, ids.shape[1])


def compare(batch: int = 16, new_tokens: int = 48, repeat: int = 5, gpt2_shape: bool = False, seed: int = 0) -> dict:
    """Time sample_rollout / greedy_rollout against model.generate on the profile's LM; return seconds, tokens/s, ratios, identity."""
    from rl4lm import profiles
    from rl4lm.rlhf.lm_policy_gradient import review_prompts

    tokenizer = profiles.load_tokenizer("lm")
    model = _gpt2_shaped(len(tokenizer)) if gpt2_shape else profiles.load_model("lm")
    profiles.use_tiny_threads()
    prompts = review_prompts(profiles.load_dataset("reviews", split="test")["text"][:batch], words=3)
    runs, prompt_len = _runs(model, tokenizer, prompts, new_tokens, seed)
    outputs = {name: run() for name, run in runs.items()}  # warm-up, and the outputs compared below
    seconds = {name: [] for name in runs}
    with torch.inference_mode():
        for _ in range(repeat):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                seconds[name].append(time.perf_counter() - start)
    result = {"model": "GPT-2 small shape, random weights" if gpt2_shape else f"{profiles.current_profile()} profile LM",
              "batch": batch, "new_tokens": new_tokens, "repeat": repeat, "threads": torch.get_num_threads(), "methods": {}}
    for name in runs:
        generated = outputs[name].shape[1] - prompt_len  # steps run (the loop stops once every row has ended)
        median = statistics.median(seconds[name])
        result["methods"][name] = {"seconds": median, "min": min(seconds[name]), "max": max(seconds[name]),
                                   "positions": generated, "tokens_per_s": batch * generated / median}
    for ours, theirs in (("greedy_rollout", "generate greedy"), ("sample_rollout", "generate sample")):
        result["methods"][ours]["ratio"] = result["methods"][ours]["tokens_per_s"] / result["methods"][theirs]["tokens_per_s"]
    result["greedy_identical"] = torch.equal(outputs["greedy_rollout"], outputs["generate greedy"])
    result["sample_identical"] = torch.equal(outputs["sample_rollout"], outputs["generate sample"])
    return result


def report(result: dict) -> str:
    """The comparison as a small table: median seconds (min-max), tokens/s, ratio to generate."""
    lines = [f"Sampler vs generate: {result['model']}, batch {result['batch']} x up to {result['new_tokens']} new tokens, "
             f"median of {result['repeat']}, {result['threads']} torch thread(s)",
             f"{'method':<18} {'seconds (min-max)':>22} {'positions':>9} {'tokens/s':>10} {'vs generate':>11}"]
    for name, row in result["methods"].items():
        ratio = f"{row['ratio']:.2f}x" if "ratio" in row else ""
        lines.append(f"{name:<18} {row['seconds']:8.3f} ({row['min']:.3f}-{row['max']:.3f}) {row['positions']:9d} "
                     f"{row['tokens_per_s']:10.0f} {ratio:>11}")
    lines.append(f"greedy output identical to generate: {result['greedy_identical']}; "
                 f"sampled output identical under the same seed: {result['sample_identical']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line: print the comparison table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--gpt2-shape", action="store_true", help="time a random model of GPT-2 small's shape instead of the profile's LM")
    args = parser.parse_args(argv)
    print(report(compare(args.batch, args.new_tokens, args.repeat, args.gpt2_shape)))


if __name__ == "__main__":
    main()
