"""Session 12 lecture script: a language model as a tool-using agent, the ReAct loop of Thought, Action and Observation.

    python code/lectures/s12_agent_loop.py                        # questions 1-3, free generation and constrained choice
    python code/lectures/s12_agent_loop.py --question 5 --mode constrained --max-steps 6
    python code/lectures/s12_agent_loop.py --question "A cinema has 12 rows of 15 seats. How many seats?" --answer 180
    python code/lectures/s12_agent_loop.py --calculate "23 * 7"           # the calculator tool alone
    python code/lectures/s12_agent_loop.py --calculate "__import__('os')"  # ... and how it refuses what is not arithmetic

The loop is rl4lm.agents.react_loop (Yao et al., 2023) with the calculator tool (rl4lm.agents.CALCULATOR), as Session
12's page runs it. Each step the model continues the prompt and the transcript so far after 'Thought:'; the program
runs the action it takes, calculate[expression] or finish[answer], and appends the tool's result as an Observation.
In --mode free the model writes its action itself (greedy decoding) and a malformed one becomes an 'Error:'
observation; in --mode constrained it chooses, by its log-probability per token, among the well-formed actions on the
numbers at hand (rl4lm.agents.arithmetic_actions), and the script shows the probability of the chosen action against
a uniform choice (the softmax, over the action set, of each action's log-probability per token, the score it is chosen
by; not the model's probability of writing that action). Both are greedy, so a run is the same every time and does
not depend on --seed (which seeds torch, as every course script does). A question is solved when the first number of
its finish[...] answer is the expected one (rl4lm.agents.answer_matches). --question is a question's text or the number
of one of the course's eight (rl4lm.agents.ARITHMETIC_QUESTIONS, which carry their answers); give --answer for
questions of your own.

Tiny profile: the "instruct_lm" role is the course's 0.3M-parameter GPT-2 of lower-case film reviews (the tiny profile
has no instruction-tuned model). It has never seen arithmetic or square brackets, and the prompt is longer than its 256
positions (the loop keeps the prompt's end), so it solves few or none of the questions: free generation writes no
well-formed action, and constrained choice shows the machinery (tool calls, observations feeding the next action set)
with choices hardly better than uniform. Full profile: "instruct_lm" is Qwen2.5-0.5B-Instruct, in bfloat16 on a GPU that
has it (not measured here). A bad value (an empty --question, --max-steps 0, --answer without --question, --answer nan,
--calculate with --question) is one line on stderr and exit status 2; so is an expression the calculator refuses.
"""
from __future__ import annotations

import argparse
import math
import re

from rl4lm.assets.roles import PIPELINE_ROLES
from rl4lm.labs import Parser, run_main, start_lecture

MAX_SEED = 2**63 - 1  # torch generators take 64-bit seeds
MAX_STEPS = 20
DEFAULT_QUESTIONS = ["1", "2", "3"]  # the first three of rl4lm.agents.ARITHMETIC_QUESTIONS
MODES = {"free": "free generation", "constrained": "constrained choice"}


def parser() -> Parser:
    """The command line: every option with its help text."""
    cli = Parser(__doc__)
    cli.add_argument("--question", action="append", default=argparse.SUPPRESS,
                     help="a question for the agent, or the number (1 to 8) of one of the course's arithmetic questions; "
                          f"repeat the option for several (default: {', '.join(DEFAULT_QUESTIONS)})")
    cli.add_argument("--answer", action="append", type=float, default=argparse.SUPPRESS,
                     help="the expected number of each --question in order, to score questions of your own "
                          "(default: the course's questions carry their answers, others are not scored)")
    cli.add_argument("--mode", choices=(*MODES, "both"), default="both",
                     help="how the model picks its action: free generation, constrained choice among well-formed actions, or both")
    cli.add_argument("--max-steps", type=int, default=4,
                     help=f"most Thought/Action/Observation steps per question (1 to {MAX_STEPS}), as the page's MAX_STEPS")
    cli.add_argument("--model", choices=("instruct_lm", "lm", *PIPELINE_ROLES), default="instruct_lm",
                     help="model role that plays the agent (the page uses instruct_lm)")
    cli.add_argument("--seed", type=int, default=0,
                     help=f"seed of torch (0 to {MAX_SEED}); the loop is greedy, so every seed prints the same transcripts")
    cli.add_argument("--calculate", metavar="EXPRESSION", default=None,
                     help="only run the calculator tool on this expression and print its value (no model is loaded)")
    return cli


def questions_and_answers(cli: Parser, given: list[str], answers: list[float] | None) -> list[tuple[str, float | None]]:
    """(question, expected answer or None) of every --question; a number picks one of rl4lm.agents.ARITHMETIC_QUESTIONS."""
    from rl4lm.agents import ARITHMETIC_QUESTIONS

    known = dict(ARITHMETIC_QUESTIONS)
    pairs = []
    for i, text in enumerate(given):
        if re.fullmatch(r"[+-]?\d+", text.strip()):  # a whole number, even a negative one, names a course question
            k = int(text)
            if not 1 <= k <= len(ARITHMETIC_QUESTIONS):
                cli.error(f"--question {k} names no course question; they are numbered 1 to {len(ARITHMETIC_QUESTIONS)}")
            text = ARITHMETIC_QUESTIONS[k - 1][0]
        pairs.append((text, answers[i] if answers is not None else known.get(text)))
    return pairs


def checked_arguments(cli: Parser, argv: list[str] | None) -> argparse.Namespace:
    """The parsed options, with ``args.questions`` as (question, expected or None); a bad value exits with one sentence."""
    args = cli.parse_args(argv)
    if not 1 <= args.max_steps <= MAX_STEPS:
        cli.error(f"--max-steps must be between 1 and {MAX_STEPS}, not {args.max_steps}")
    if not 0 <= args.seed <= MAX_SEED:
        cli.error(f"--seed must be between 0 and {MAX_SEED}, not {args.seed}")
    if args.calculate is not None and not args.calculate.strip():
        cli.error('--calculate is empty: give an arithmetic expression, e.g. --calculate "23 * 7"')
    given, answers = getattr(args, "question", DEFAULT_QUESTIONS), getattr(args, "answer", None)
    if args.calculate is not None and (hasattr(args, "question") or answers is not None):
        cli.error("--calculate runs the calculator alone, without the agent: drop --question and --answer, or drop --calculate")
    for answer in answers or []:
        if not math.isfinite(answer):
            cli.error(f"--answer must be a finite number, not {answer}: no finish[...] answer could ever match it")
    for i, text in enumerate(given):
        if not text.strip():
            cli.error(f"--question number {i + 1} is empty: give a question or the number of one of the course's questions")
    if answers is not None and len(answers) != len(given):
        cli.error(f"{len(answers)} --answer for {len(given)} questions: give one --answer per --question, in order "
                  f"(without --question the questions are the {len(DEFAULT_QUESTIONS)} default ones)")
    args.questions = questions_and_answers(cli, given, answers)  # imports rl4lm.agents (and torch) for the course's questions
    return args


def print_transcript(transcript, expected: float | None) -> bool:
    """Print an episode step by step (the chosen action's probability in constrained choice) and its outcome; return whether it is solved."""
    from rl4lm.agents import answer_matches, scratchpad

    print(f"Question: {transcript.question}")
    for step in transcript.steps:
        lines = scratchpad([step]).splitlines()  # Thought, Action and (but after finish) Observation
        if step.candidates is not None:  # constrained choice: how sure the model was, after the Action line
            lines.insert(2, f"    (probability {max(step.probabilities):.3f}: softmax of log P per token over the "
                            f"{len(step.candidates)} well-formed actions; uniform: {1 / len(step.candidates):.3f})")
        print("\n".join(lines))
    solved = expected is not None and answer_matches(transcript.answer, expected)
    if transcript.answer is None:
        outcome = f"no answer: {len(transcript.steps)} step{'s' if len(transcript.steps) > 1 else ''} without finish[...]"
    else:
        outcome = f"Answer: {transcript.answer}"
    if expected is None:
        verdict = "not scored (no expected answer; give --answer)"
    else:
        verdict = f"expected {expected:g}: {'solved' if solved else 'not solved'}"
    print(f"{outcome}; {verdict}\n")
    return solved


def main(argv: list[str] | None = None) -> None:
    """Run the calculator alone, or the ReAct loop on every question in every mode; print the transcripts and the solved count."""
    cli = parser()
    args = checked_arguments(cli, argv)
    if args.calculate is not None:
        from rl4lm.agents import CALCULATOR

        try:
            print(f"calculate[{args.calculate}] = {CALCULATOR.run(args.calculate)}")
        except ValueError as error:  # the calculator's own sentence, as the agent would read it in an Error: observation
            cli.error(f"the calculator refuses --calculate {args.calculate!r}: {str(error).rstrip('.')}")
        return

    from rl4lm import profiles  # imported after the options are checked: --help and a refusal answer at once
    from rl4lm.agents import arithmetic_actions, react_loop

    device = start_lecture(args.seed)
    tokenizer = profiles.load_tokenizer(args.model)
    model = profiles.load_model(args.model, dtype=profiles.inference_dtype(device)).to(device)
    modes = list(MODES) if args.mode == "both" else [args.mode]
    solved = dict.fromkeys(modes, 0)
    for number, (question, expected) in enumerate(args.questions, start=1):
        for mode in modes:
            print(f"--- question {number}, {MODES[mode]} ({args.model}, at most {args.max_steps} steps)")
            actions = arithmetic_actions if mode == "constrained" else None
            transcript = react_loop(model, tokenizer, question, max_steps=args.max_steps, actions=actions)
            solved[mode] += print_transcript(transcript, expected)
    scored = sum(expected is not None for _, expected in args.questions)
    print("solved: " + ", ".join(f"{MODES[mode]} {solved[mode]} of {scored}" for mode in modes)
          + (f" ({len(args.questions) - scored} not scored: no expected answer)" if scored < len(args.questions) else ""))
    if profiles.current_profile() == "tiny":
        print("(tiny profile: the 0.3M-parameter review model has never seen arithmetic, so it solves few or none; the "
              "transcripts show the loop's machinery, not competence)")


if __name__ == "__main__":
    run_main(main)
