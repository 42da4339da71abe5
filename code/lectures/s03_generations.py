"""Session 3 lecture script: the same prompts answered by a base model and an instruction-tuned model, with the
log-likelihood of every answer under both models.

    python code/lectures/s03_generations.py
    python code/lectures/s03_generations.py --prompt "review : a dull drama . question : did the reviewer like the film ? answer :"
    python code/lectures/s03_generations.py --sample --temperature 0.7 --seed 1    # sampled answers; same seed, same answers
    python code/lectures/s03_generations.py --tuned pipeline_rl                   # the base against the final RL stage

Full profile: OLMo 2 1B, the pre-trained base against the same model after supervised fine-tuning (one family, one
tokenizer); tiny profile: the tiny LM against its SFT version, which was fine-tuned on questions about reviews in the
format 'review : ... question : ... answer :' of rl4lm.lm.sft.qa_prompt (the default prompts use it). A model with a
chat template (the tuned OLMo stages) reads each prompt inside its template, a model without one (the base) reads the
raw text, as each would be used. Every answer is then scored by both models, each reading the prompt its own way:
log P(answer | prompt) summed over the answer's tokens (the end-of-text token included when the answer stops there)
and per token. Look along a prompt's rows: each model usually gives its own answer the higher likelihood.

The models are loaded one at a time (base, tuned, base again), in the profile's inference dtype on the GPU if there is
one, so two 1B models never share a T4's memory. A bad value (an empty prompt, the same role twice, --new-tokens 0,
--temperature without --sample) is one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import math

from rl4lm.assets.roles import PIPELINE_ROLES
from rl4lm.labs import Parser, run_main, start_lecture

MAX_SEED = 2**63 - 1  # torch generators take 64-bit seeds
DEFAULT_PROMPTS = [  # questions in the SFT format of rl4lm.lm.sft.qa_prompt, and a review opening to continue
    "review : what a brilliant romance . it is a fresh treat . i would watch it again . question : did the reviewer like the film ? answer :",
    "review : the new thriller is so dull . the acting was clumsy . skip this one . question : what kind of film is it ? answer :",
    "this comedy was",
]


def model_input(tokenizer, prompt: str) -> str:
    """The text a model continues: the prompt inside the chat template if the tokenizer has one (instruction-tuned), else the raw prompt."""
    from rl4lm.agents import assistant_prompt

    return assistant_prompt(tokenizer, prompt) if getattr(tokenizer, "chat_template", None) else prompt


def generate_answers(model, tokenizer, prompts: list[str], new_tokens: int, temperature: float | None, seed: int) -> list[list[int]]:
    """Each prompt's answer token ids, up to and including the end-of-text token: greedy (temperature None) or seeded sampling."""
    import torch

    from rl4lm.lm.rollout import greedy_rollout, sample_rollout

    texts = [model_input(tokenizer, prompt) for prompt in prompts]
    if temperature is None:
        rollout = greedy_rollout(model, tokenizer, texts, new_tokens)
    else:
        generator = torch.Generator(device=model.device).manual_seed(seed)
        rollout = sample_rollout(model, tokenizer, texts, new_tokens, temperature=temperature, generator=generator)
    rows = zip(rollout.response_ids.tolist(), rollout.response_mask[:, rollout.prompt_len:].tolist())  # (new,) each
    return [[token for token, kept in zip(ids, mask) if kept] for ids, mask in rows]


def answer_log_likelihoods(model, tokenizer, prompts: list[str], answers: list[list[int]]) -> list[float]:
    """log P(y | x) = sum_t log P(y_t | x, y_<t) of each answer y after its prompt x, the prompt written as this model reads it."""
    import torch

    from rl4lm.lm.logprobs import sequence_logprob
    from rl4lm.lm.rollout import left_padded_prompts

    sums = []
    with torch.no_grad():
        for prompt, answer in zip(prompts, answers):
            prompt_ids, _ = left_padded_prompts(tokenizer, [model_input(tokenizer, prompt)], model.device)  # (1, prompt_len)
            ids = torch.cat([prompt_ids, torch.tensor([answer], device=model.device)], dim=1)  # (1, prompt_len + answer)
            response_mask = torch.zeros_like(ids)
            response_mask[:, prompt_ids.shape[1]:] = 1
            sums.append(sequence_logprob(model, ids, torch.ones_like(ids), response_mask).item())
    return sums


def with_model(role: str, device: str, work):
    """``work(tokenizer, model)`` with the role's model loaded on ``device`` in its inference dtype, then freed (one model at a time)."""
    from rl4lm import profiles
    from rl4lm.labs import release_memory

    tokenizer = profiles.load_tokenizer(role)
    model = profiles.load_model(role, dtype=profiles.inference_dtype(device)).to(device)
    result = work(tokenizer, model)
    del model
    release_memory(device)
    return result


def parser() -> Parser:
    """The command line: every option with its help text."""
    cli = Parser(__doc__)
    cli.add_argument("--base", default="pipeline_base", choices=PIPELINE_ROLES,
                     help="the model role that answers first, usually the pre-trained base of the pipeline")
    cli.add_argument("--tuned", default="pipeline_sft", choices=PIPELINE_ROLES,
                     help="the model role compared with it, a later (instruction-tuned) stage of the same pipeline")
    cli.add_argument("--prompt", action="append", default=argparse.SUPPRESS,
                     help="a prompt both models answer (not empty); repeat the option for several prompts "
                          "(default: two questions about reviews in the SFT format and a review opening)")
    cli.add_argument("--new-tokens", type=int, default=24,
                     help="most new tokens per answer (at least 1); an answer stops earlier at the end-of-text token")
    decoding = cli.add_mutually_exclusive_group()
    decoding.add_argument("--greedy", dest="sample", action="store_false", default=argparse.SUPPRESS,
                          help="answer with the most likely token at every step (the default; --seed does not matter)")
    decoding.add_argument("--sample", dest="sample", action="store_true", default=argparse.SUPPRESS,
                          help="answer by sampling from each model's next-token distribution, seeded by --seed")
    cli.add_argument("--temperature", type=float, default=argparse.SUPPRESS,
                     help="sampling temperature with --sample, positive (default: 1, the model's own distribution)")
    cli.add_argument("--seed", type=int, default=0,
                     help=f"seed of the sampled answers (0 to {MAX_SEED}); the same seed prints the same answers")
    return cli


def checked_arguments(cli: Parser, argv: list[str] | None) -> argparse.Namespace:
    """The parsed options, with ``temperature`` None for greedy decoding; a bad value exits with one sentence."""
    args = cli.parse_args(argv)
    args.prompt = getattr(args, "prompt", DEFAULT_PROMPTS)
    sample = getattr(args, "sample", False)
    if args.base == args.tuned:
        cli.error(f"--base and --tuned are both {args.base}: choose two different stages to compare")
    for i, prompt in enumerate(args.prompt):
        if not prompt.strip():
            cli.error(f"--prompt number {i + 1} is empty: give it some text, e.g. --prompt \"this comedy was\"")
    if args.new_tokens < 1:
        cli.error(f"--new-tokens must be at least 1, not {args.new_tokens}")
    if hasattr(args, "temperature") and not sample:
        cli.error("--temperature needs --sample: greedy decoding picks the most likely token at any temperature")
    args.temperature = getattr(args, "temperature", 1.0) if sample else None
    if args.temperature is not None and not 0 < args.temperature < math.inf:
        cli.error(f"--temperature must be positive and finite, not {args.temperature}")
    if not 0 <= args.seed <= MAX_SEED:
        cli.error(f"--seed must be between 0 and {MAX_SEED}, not {args.seed}")
    return args


def check_room(cli: Parser, role: str, tokenizer, model, prompts: list[str], new_tokens: int) -> None:
    """Exit with one sentence if a prompt, as ``role`` reads it, and --new-tokens do not fit the model's context."""
    from rl4lm.labs import context_length

    context = context_length(model)
    longest = max(len(tokenizer(model_input(tokenizer, prompt))["input_ids"]) for prompt in prompts)
    if context is not None and longest >= context:
        cli.error(f"the longest prompt has {longest} tokens for {role}, which leaves no room in its context of {context} tokens: shorten it")
    if context is not None and longest + new_tokens > context:
        cli.error(f"the longest prompt has {longest} tokens for {role}, which with --new-tokens {new_tokens} exceeds its context "
                  f"of {context} tokens; use --new-tokens {context - longest} or less")


def main(argv: list[str] | None = None) -> None:
    """Print each prompt's answer by each model with its log-likelihood under both models, then which model prefers whose answers."""
    cli = parser()
    args = checked_arguments(cli, argv)
    from rl4lm import profiles  # imported after the options are checked: --help and a refusal answer at once
    from rl4lm.assets.roles import role as role_of

    device = start_lecture(args.seed)
    base, tuned, prompts = args.base, args.tuned, args.prompt
    answers, log_p = {}, {}  # answers[author][prompt]: token ids; log_p[judge][author][prompt]: log P(answer | prompt)

    def answer_prompts(role: str, tokenizer, model) -> None:
        check_room(cli, role, tokenizer, model, prompts, args.new_tokens)
        answers[role] = generate_answers(model, tokenizer, prompts, args.new_tokens, args.temperature, args.seed)

    def judge_answers(tokenizer, model) -> dict[str, list[float]]:
        return {author: answer_log_likelihoods(model, tokenizer, prompts, answers[author]) for author in (base, tuned)}

    def answer_and_score(tokenizer, model) -> dict[str, list[float]]:
        answer_prompts(tuned, tokenizer, model)
        return judge_answers(tokenizer, model)

    with_model(base, device, lambda tokenizer, model: answer_prompts(base, tokenizer, model))
    log_p[tuned] = with_model(tuned, device, answer_and_score)
    log_p[base] = with_model(base, device, judge_answers)  # the base again: it scores the tuned model's answers too
    tokenizer = profiles.load_tokenizer(base)  # the pipeline's stages share one tokenizer
    decoding = "greedy decoding" if args.temperature is None else f"sampling at temperature {args.temperature:g}, seed {args.seed}"
    print(f"\nbase:  {base}, {role_of(base).purpose}\ntuned: {tuned}, {role_of(tuned).purpose}\nanswers by {decoding}, "
          f"at most {args.new_tokens} new tokens; log P = log P(answer | prompt) under each model\n")
    width = max(len(base), len(tuned))
    for i, prompt in enumerate(prompts):
        print(f"prompt {i + 1}: {prompt}")
        for author in (base, tuned):
            ids = answers[author][i]
            stopped = " [end of text]" if ids[-1] == tokenizer.eos_token_id else ""
            print(f"  {author} answers ({len(ids)} tokens): {tokenizer.decode(ids, skip_special_tokens=True)!r}{stopped}")
            for judge in (base, tuned):
                total = log_p[judge][author][i]
                print(f"      log P under {judge:<{width}} {total:8.2f}   per token {total / len(ids):6.2f}")
        print()
    print_preferences(base, tuned, answers, log_p)


def print_preferences(base: str, tuned: str, answers: dict, log_p: dict) -> None:
    """Per judge, on how many prompts it gives its own answer a higher log P per token than the other model's answer.

    A prompt that both models answered with the same tokens is left out of the count and said so: there the two
    answers' scores are equal, and a count of 0 would read as a preference.
    """
    differ = [mine != theirs for mine, theirs in zip(answers[base], answers[tuned])]  # (prompts,)
    same = len(differ) - sum(differ)
    if not any(differ):
        print("both models answered every prompt with the same tokens: neither can prefer its own answer (with --sample both "
              "draw with the same seed, so a high temperature makes their answers alike)")
        return
    alike = f" (left out: {same} prompt{'s' if same > 1 else ''} both models answered alike)" if same else ""
    for judge, other in ((base, tuned), (tuned, base)):
        own = sum(log_p[judge][judge][i] / len(answers[judge][i]) > log_p[judge][other][i] / len(answers[other][i])
                  for i, kept in enumerate(differ) if kept)
        print(f"{judge} gives its own answer a higher log P per token than {other}'s on {own} of {sum(differ)} prompts{alike}")


if __name__ == "__main__":
    run_main(main)
