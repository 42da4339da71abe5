"""Language models as classifiers, agents and simulated respondents (Session 12).

Three uses of one next-token distribution, each a few lines around :mod:`rl4lm.lm.scoring` and :mod:`rl4lm.lm.rollout`:

- **a zero-shot classifier**: the label whose verbaliser (" positive", " negative") is most probable after a template
  (Radford et al., 2019; Schick and Schütze, 2021), optionally divided by its probability after a content-free input
  (contextual calibration, Zhao et al., 2021);
- **an agent**: a program runs the model in a loop of Thought / Action / Observation steps, executes the tool that the
  model calls and appends the result, until the model writes ``finish[answer]`` or a step limit is reached (ReAct, Yao
  et al., 2023). The action comes either from free greedy generation, parsed (a malformed action becomes an error
  observation), or from a finite set of well-formed actions ranked by the model's log-probability (constrained choice);
- **a survey respondent**: the probabilities of lettered answer options, in the order given and reversed, which expose
  answer-order effects (Dominguez-Olmedo et al., 2024).

The calculator tool parses arithmetic with :mod:`ast` and evaluates the tree itself: no ``eval`` or ``exec``, no names,
no calls, and bounds on the expression's length, its nesting depth, exponents and every intermediate value.

The public API, for pages and command-line scripts: :func:`calculate` (and :data:`CALCULATOR`, the same as a
:class:`Tool`), :func:`react_loop` returning an :class:`AgentTranscript`, :data:`ARITHMETIC_QUESTIONS` with
:func:`answer_matches` to score them, :func:`zero_shot_label_scores` with :func:`contextual_calibration`, and
:func:`answer_order_effect`.
"""
from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from .analysis.probes import continuation_logprobs
from .lm.rollout import _accepts_logits_to_keep, rollout_from_ids
from .lm.scoring import SEPARATOR, _check_normalize, _check_options, left_truncated, score_options

__all__ = ["ARITHMETIC_QUESTIONS", "CALCULATOR", "CONTENT_FREE_INPUTS", "FINISH", "AgentStep", "AgentTranscript", "Tool",
           "answer_matches", "answer_order_effect", "arithmetic_actions", "assistant_prompt", "calculate", "calculator_tool",
           "contextual_calibration", "format_number", "greedy_continuation", "letter_probabilities", "lettered_question",
           "parse_action", "parse_step", "react_loop", "react_prompt", "scratchpad", "shared_context_scores", "take_action",
           "zero_shot_label_scores"]

# ---------------------------------------------------------------------------------------------------------------------
# The calculator tool: arithmetic on numbers, parsed with ast and evaluated node by node
# ---------------------------------------------------------------------------------------------------------------------
MAX_EXPRESSION_CHARS = 200  # longer expressions are refused before parsing
MAX_EXPONENT = 100  # |b| in a ** b
MAX_DEPTH = 100  # operators nested in one another (a sum of 100 terms within the length limit is still allowed)
MAX_MAGNITUDE = 1e15  # every literal, intermediate value and result must stay within +-MAX_MAGNITUDE
ARITHMETIC = "numbers, + - * / // % ** and parentheses"
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_REFUSED = {ast.Name: "a name", ast.Attribute: "an attribute", ast.Call: "a function call", ast.Subscript: "an index",
            ast.BitXor: "^ (write ** for a power)", ast.Tuple: "a comma (write numbers without thousands separators)",
            ast.Compare: "a comparison", ast.BoolOp: "and/or", ast.Lambda: "a lambda", ast.List: "a list",
            ast.Invert: "~", ast.Not: "not", ast.IfExp: "if/else", ast.JoinedStr: "a string", ast.BitAnd: "&",
            ast.BitOr: "|", ast.LShift: "<<", ast.RShift: ">>", ast.MatMult: "@"}


def _refuse(what: str) -> ValueError:
    """The calculator's one-sentence error for an expression that uses ``what``."""
    return ValueError(f"expression uses {what}; the calculator knows only {ARITHMETIC}.")


def _bounded(value: int | float) -> int | float:
    """``value`` itself, or a ValueError when it is not finite or exceeds MAX_MAGNITUDE in absolute value."""
    if isinstance(value, complex) or not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
        raise ValueError(f"expression has a value beyond +-{MAX_MAGNITUDE:.0e} (or not a real number); the calculator "
                         "refuses it.")
    return value


def _power(base: int | float, exponent: int | float) -> int | float:
    """base ** exponent, refused before computing when the exponent or the result would be too large.

    log10 |base ** exponent| = exponent * log10 |base| is checked for either sign of the exponent, so that a small base
    with a negative exponent (0.001 ** -6) is refused like a large base with a positive one, before a float overflows.
    """
    if abs(exponent) > MAX_EXPONENT:
        raise ValueError(f"expression raises to the power {exponent}; exponents are limited to +-{MAX_EXPONENT}.")
    if base == 0 and exponent < 0:
        raise ValueError("expression divides by zero (zero to a negative power).")
    if base != 0 and exponent * math.log10(abs(base)) > math.log10(MAX_MAGNITUDE):
        raise ValueError(f"expression has a power beyond +-{MAX_MAGNITUDE:.0e}; the calculator refuses it.")
    if base < 0 and exponent != int(exponent):
        raise ValueError("expression raises a negative number to a fractional power, which has no real value.")
    return base ** exponent


def _evaluate(node: ast.AST, depth: int = 0) -> int | float:
    """The value of one node of an arithmetic expression tree, ``depth`` operators below the root; other nodes are refused."""
    if depth > MAX_DEPTH:
        raise ValueError(f"expression nests more than {MAX_DEPTH} operators in one another; the calculator refuses it.")
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise _refuse(f"the literal {node.value!r}")
        return _bounded(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _bounded(_UNARY[type(node.op)](_evaluate(node.operand, depth + 1)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left, depth + 1), _evaluate(node.right, depth + 1)
        if isinstance(node.op, ast.Pow):
            return _bounded(_power(left, right))
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and right == 0:
            raise ValueError("expression divides by zero.")
        return _bounded(_BINARY[type(node.op)](left, right))
    kind = getattr(node, "op", node)
    raise _refuse(_REFUSED.get(type(kind), f"{type(kind).__name__} syntax"))


def calculate(expression: str) -> int | float:
    """The value of an arithmetic expression: the calculator tool of a ReAct agent (Yao et al., 2023), evaluated safely.

    Parsed with :func:`ast.parse` and evaluated node by node, never with ``eval``: only numbers, unary + and -, the
    binary operators + - * / // % ** and parentheses are allowed. Names, attributes, calls, indexing, comparisons and
    anything else get a one-sentence ValueError, as do expressions longer than :data:`MAX_EXPRESSION_CHARS` characters,
    operators nested deeper than :data:`MAX_DEPTH`, exponents beyond :data:`MAX_EXPONENT`, values beyond
    :data:`MAX_MAGNITUDE` and division by zero. The work is bounded: every operand is within MAX_MAGNITUDE, so each
    operation is cheap, and a power's size is checked before it is computed. Nothing escapes but a ValueError.
    """
    if not isinstance(expression, str):
        raise ValueError(f"expression should be a string such as '23 * 7', not {type(expression).__name__}.")
    text = expression.strip()
    if not text:
        raise ValueError("expression is empty; write an arithmetic expression such as '23 * 7'.")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"expression has {len(text)} characters; the calculator reads at most {MAX_EXPRESSION_CHARS}.")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise ValueError(f"expression {shown!r} is not arithmetic that the calculator can read ({ARITHMETIC}).") from None
    try:
        return _evaluate(tree.body)
    except RecursionError:  # not reached within MAX_DEPTH from an ordinary stack; kept for a caller that is already deep
        raise ValueError("expression is nested too deeply for the calculator.") from None
    except ArithmeticError as error:  # a safety net: the checks above should leave no overflow or division by zero
        raise ValueError(f"expression cannot be computed ({error}).") from None


def format_number(value: int | float) -> str:
    """A calculator result as an observation: whole numbers without a decimal point, others to 10 significant digits."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value) if isinstance(value, int) else f"{value:.10g}"


def calculator_tool(argument: str) -> str:
    """The calculator as a ReAct tool (Yao et al., 2023): the argument's value as text; a bad expression raises ValueError."""
    return format_number(calculate(argument))


@dataclass(frozen=True)
class Tool:
    """A tool of a ReAct agent (Yao et al., 2023): the name the model writes, a line for the prompt, the function to run."""

    name: str
    description: str  # shown to the model in the instructions
    run: Callable[[str], str]  # argument text -> observation text; raises ValueError on a bad argument


CALCULATOR = Tool("calculate", "calculate[expression] returns the value of an arithmetic expression with + - * / and "
                  "parentheses, e.g. calculate[(7 + 9) / 2]", calculator_tool)
FINISH = "finish"  # the action that ends an episode: finish[answer]

# ---------------------------------------------------------------------------------------------------------------------
# Actions and steps of the ReAct loop
# ---------------------------------------------------------------------------------------------------------------------
_ACTION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\[(.*)\]\s*$", re.DOTALL)


def parse_action(text: str) -> tuple[str, str]:
    """(tool, argument) of an action written ``tool[argument]``, e.g. ``calculate[23 * 7]`` (ReAct; Yao et al., 2023).

    The tool name is returned in lower case and the argument without surrounding spaces; text of any other form
    raises a one-sentence ValueError, which :func:`react_loop` shows the model as an observation.
    """
    if not isinstance(text, str):
        raise ValueError(f"action should be a string such as 'calculate[23 * 7]', not {type(text).__name__}.")
    match = _ACTION.match(text)
    if match is None:
        shown = text.strip()[:80] or "empty"
        raise ValueError(f"action '{shown}' is not of the form tool[argument], e.g. calculate[23 * 7] or finish[161].")
    return match.group(1).lower(), match.group(2).strip()


def parse_step(generated: str) -> tuple[str, str | None]:
    """(thought, action line or None) of the text a model wrote after 'Thought:' in a ReAct prompt (Yao et al., 2023).

    The text is cut before any 'Observation' the model writes itself (observations come from the program only); the
    thought is what precedes 'Action:', the action the rest of that line. Without an 'Action:' the whole first
    paragraph is the thought and the action is None.
    """
    text = generated.split("Observation", 1)[0]
    if "Action:" not in text:
        return text.strip().split("\n\n", 1)[0].strip(), None
    thought, rest = text.split("Action:", 1)
    return thought.strip(), rest.strip().split("\n", 1)[0].strip()


@dataclass
class AgentStep:
    """One Thought / Action / Observation step of a ReAct episode (Yao et al., 2023).

    ``tool`` and ``argument`` are None when the action was malformed; ``observation`` is the tool's result, an error
    message starting with 'Error:' or, for ``finish``, empty. In constrained choice, ``candidates`` holds the action set
    and ``probabilities`` the model's distribution over it (softmax of the candidates' scores), the chosen one highest.
    """

    thought: str
    action: str | None
    tool: str | None
    argument: str | None
    observation: str
    candidates: list[str] | None = None
    probabilities: list[float] | None = None

    @property
    def malformed(self) -> bool:
        """Whether the action could not be parsed or named no known tool."""
        return self.tool is None


@dataclass
class AgentTranscript:
    """A ReAct episode: the question, its steps, the final answer (None without finish[...]) and why it stopped."""

    question: str
    steps: list[AgentStep] = field(default_factory=list)
    answer: str | None = None
    stopped: str = "max_steps"  # "finish" or "max_steps"

    def text(self) -> str:
        """The episode in ReAct's text format: the question, then its Thought / Action / Observation lines."""
        return f"Question: {self.question}\n" + scratchpad(self.steps)

    @property
    def malformed_actions(self) -> int:
        """How many steps had an action that could not be run."""
        return sum(step.malformed for step in self.steps)


def scratchpad(steps: Sequence[AgentStep]) -> str:
    """The Thought / Action / Observation lines of the steps so far, as ReAct appends them to the prompt (Yao et al., 2023)."""
    lines = []
    for step in steps:
        lines.append("Thought:" + (f" {step.thought}" if step.thought else ""))
        lines.append(f"Action: {step.action if step.action is not None else ''}".rstrip())
        if step.tool != FINISH:
            lines.append(f"Observation: {step.observation}")
    return "".join(line + "\n" for line in lines)


def take_action(action: str | None, tools: dict[str, Tool]) -> AgentStep:
    """Run one action: parse it, call its tool and record the observation, or an 'Error: ...' observation (Yao et al., 2023).

    ``finish[answer]`` runs nothing. A missing or malformed action, an unknown tool or a tool's ValueError becomes an
    observation, so the model can read what went wrong and try again.
    """
    if action is None:
        return AgentStep("", None, None, None, "Error: no action; write 'Action: tool[argument]' after the thought.")
    try:
        tool, argument = parse_action(action)
    except ValueError as error:
        return AgentStep("", action, None, None, f"Error: {error}")
    if tool == FINISH:
        return AgentStep("", action, FINISH, argument, "")
    if tool not in tools:
        known = ", ".join([*tools, FINISH])
        return AgentStep("", action, None, argument, f"Error: there is no tool '{tool}'; the tools are {known}.")
    try:
        observation = tools[tool].run(argument)
    except ValueError as error:
        observation = f"Error: {error}"
    return AgentStep("", action, tool, argument, observation)


# ---------------------------------------------------------------------------------------------------------------------
# Prompts: a chat template where the tokenizer has one, plain text otherwise
# ---------------------------------------------------------------------------------------------------------------------
REACT_INSTRUCTIONS = ("Answer the question step by step. After each Thought, write exactly one Action: a tool call or "
                      "finish[answer] with the final answer as a number. The program runs the tool and writes its result "
                      "as an Observation. Tools:\n{tools}\nfinish[answer] ends the task with the answer.")
REACT_EXAMPLES = """Question: A cinema sells 12 tickets for each of its 4 daily shows. How many tickets does it sell in a day?
Thought: I multiply the tickets per show by the number of shows.
Action: calculate[12 * 4]
Observation: 48
Thought: The cinema sells 48 tickets a day.
Action: finish[48]

Question: A festival planned 9 films on each of its 5 days, and 6 screenings were cancelled. How many films were shown?
Thought: First the number of planned screenings.
Action: calculate[9 * 5]
Observation: 45
Thought: Now I take away the 6 cancelled screenings.
Action: calculate[45 - 6]
Observation: 39
Thought: 39 films were shown.
Action: finish[39]"""

# Questions with one right number for the ReAct demos (Session 12): films and cinemas, one or two operations each.
ARITHMETIC_QUESTIONS: list[tuple[str, float]] = [
    ("A cinema sold 23 tickets at 7 euros each. How many euros did it take?", 161),
    ("A festival shows 96 films on 8 screens, the same number on each. How many films does each screen show?", 12),
    ("A director shot 143 minutes of film and cut 38 of them. How many minutes are left?", 105),
    ("A website has 458 reviews of a comedy and 267 of a thriller. How many reviews is that in all?", 725),
    ("A cinema has 18 rows of 24 seats. How many seats does it have?", 432),
    ("A critic watched 312 films in 12 months, the same number each month. How many films a month is that?", 26),
    ("A series has 6 seasons of 13 episodes, and 5 episodes were never aired. How many episodes were aired?", 73),
    ("A ticket costs 9 euros and popcorn 4 euros. How many euros do 3 friends pay if each buys a ticket and popcorn?", 39),
]


def assistant_prompt(tokenizer, user: str, system: str | None = None, prefill: str = "") -> str:
    """The text a model continues to answer ``user``: its chat template with the assistant's turn opened, else plain text.

    With a chat template (an instruction-tuned model; Ouyang et al., 2022) the system and user messages are rendered by
    ``apply_chat_template(..., add_generation_prompt=True)``; without one (a base model) they are joined by blank lines.
    ``prefill`` starts the assistant's reply (e.g. 'Thought:' or 'Answer:'), so that the model continues a fixed format.
    """
    if not isinstance(user, str) or not user.strip():
        raise ValueError("user should be a non-empty string: the message the model answers.")
    if getattr(tokenizer, "chat_template", None):
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + prefill
    return (f"{system}\n\n" if system else "") + f"{user}\n" + prefill


def react_prompt(tokenizer, question: str, tools: Sequence[Tool] = (CALCULATOR,), examples: str = REACT_EXAMPLES) -> str:
    """The ReAct prompt before the first step: instructions with the tools, worked examples, the question (Yao et al., 2023)."""
    system = REACT_INSTRUCTIONS.format(tools="\n".join(f"- {tool.description}" for tool in tools))
    if examples:
        system += f"\n\nExamples:\n\n{examples}"
    return assistant_prompt(tokenizer, f"Question: {question}", system=system)


# ---------------------------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------------------------
def greedy_continuation(model, tokenizer, text: str, max_new_tokens: int) -> str:
    """The greedy continuation y_t = argmax P(w | text, y_<t) of one text, up to EOS or max_new_tokens (KV-cached).

    The text is left-truncated when it and the continuation would not fit the model's positions, so a long agent
    transcript never stops the loop; the caller sees only the continuation, decoded without special tokens.
    """
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens should be a whole number of at least 1, got {max_new_tokens!r}.")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = left_truncated(model, ids, max_new_tokens,
                         f"max_new_tokens = {max_new_tokens} leaves no room for the text in the model's {{limit}} positions.")
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], dtype=torch.long, device=device)  # (1, prompt_len)

    def choose(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        token = logits.argmax(dim=-1, keepdim=True)  # (1, 1)
        return token.squeeze(-1), (logits.gather(-1, token) - torch.logsumexp(logits, dim=-1, keepdim=True)).squeeze(-1)

    rollout = rollout_from_ids(model, input_ids, torch.ones_like(input_ids), max_new_tokens, choose,
                               tokenizer.eos_token_id, tokenizer.pad_token_id)
    return rollout.texts(tokenizer)[0]


@torch.no_grad()
def shared_context_scores(model, tokenizer, context: str, options: Sequence[str], normalize: str = "none") -> torch.Tensor:
    """The scores of :func:`rl4lm.lm.scoring.score_options`, log P(option | context), with one pass over the shared context.

    The context goes through the model once and its KV cache is repeated for every option, so n options cost one
    context plus n short continuations instead of n full sequences (the agent's prompt is hundreds of tokens, each
    action about ten), and only the context's last logits are kept: ``score_options`` would hold n x prompt x vocabulary
    logits, gigabytes for a 150k-token vocabulary. Tokenization, left truncation and ``normalize`` are those of
    ``score_options``; (n_options,).
    """
    options = _check_options(options)
    _check_normalize(normalize)
    option_ids = [tokenizer(SEPARATOR + option, add_special_tokens=False)["input_ids"] for option in options]
    longest = max(len(ids) for ids in option_ids)
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    if not context_ids:
        raise ValueError("context is empty; give the text that the options continue.")
    context_ids = left_truncated(model, context_ids, longest,
                                 f"options has an option of {longest} tokens; the model sees at most {{limit}} tokens in all.")
    device = next(model.parameters()).device
    extra = {"logits_to_keep": 1} if _accepts_logits_to_keep(model) else {}
    out = model(input_ids=torch.tensor([context_ids], device=device), use_cache=True, **extra)
    first = out.logits[0, -1].float().log_softmax(dim=-1)  # (vocab,): P(first option token | context)
    logprobs = torch.stack([first[ids[0]] for ids in option_ids])  # (n_options,)
    if longest > 1:  # the options' later tokens, all options in one batch on top of the repeated cache
        n, width = len(option_ids), longest - 1
        inputs = torch.zeros(n, width, dtype=torch.long)  # (n, width): tokens 1..m-1 of each option, right-padded
        targets = torch.zeros(n, width, dtype=torch.long)  # (n, width): tokens 2..m, which those inputs predict
        scored = torch.zeros(n, width, dtype=torch.bool)
        for r, ids in enumerate(option_ids):
            inputs[r, :len(ids) - 1] = torch.tensor(ids[:-1])
            targets[r, :len(ids) - 1] = torch.tensor(ids[1:])
            scored[r, :len(ids) - 1] = True
        cache = out.cache
        cache.batch_repeat_interleave(n)
        positions = (len(context_ids) + torch.arange(width)).expand(n, width)  # (n, width)
        logits = model(input_ids=inputs.to(device), position_ids=positions.to(device), cache=cache, use_cache=True).logits
        later = logits.float().log_softmax(dim=-1).gather(-1, targets.to(device)[..., None]).squeeze(-1).cpu()  # (n, width)
        logprobs = logprobs.cpu() + (later * scored).sum(dim=-1)
    logprobs = logprobs.cpu()
    if normalize == "per_token":
        return logprobs / torch.tensor([len(ids) for ids in option_ids], dtype=logprobs.dtype)
    if normalize == "per_char":
        return logprobs / torch.tensor([len(option) for option in options], dtype=logprobs.dtype)
    return logprobs


def _check_loop_arguments(question, tools, max_steps, normalize) -> dict[str, Tool]:
    """The tools by name, after one-sentence checks of the loop's arguments."""
    _check_normalize(normalize)
    if not isinstance(question, str) or not question.strip():
        raise ValueError("question should be a non-empty string.")
    if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 1:
        raise ValueError(f"max_steps should be a whole number of at least 1, got {max_steps!r}.")
    if not isinstance(tools, (list, tuple)) or not all(isinstance(tool, Tool) for tool in tools):
        raise ValueError("tools should be a list of rl4lm.agents.Tool, e.g. [rl4lm.agents.CALCULATOR].")
    by_name = {tool.name.lower(): tool for tool in tools}
    if FINISH in by_name:
        raise ValueError("tools has a tool called 'finish'; that name is the action that ends the episode.")
    return by_name


ActionSet = Callable[[str, list[AgentStep]], list[str]]  # (question, steps so far) -> well-formed actions to choose from


def react_loop(model, tokenizer, question: str, tools: Sequence[Tool] = (CALCULATOR,), max_steps: int = 5,
               actions: ActionSet | None = None, examples: str = REACT_EXAMPLES, max_new_tokens: int = 48,
               thought_tokens: int = 24, normalize: str = "per_token") -> AgentTranscript:
    """Run a ReAct agent (Yao et al., 2023): Thought, Action, Observation, ... until finish[answer] or max_steps steps.

    Each step the model continues the prompt of :func:`react_prompt` and the scratchpad so far after 'Thought:'. With
    ``actions=None`` it writes thought and action freely (greedy, at most ``max_new_tokens`` tokens) and
    :func:`parse_step` reads them; a malformed action becomes an 'Error: ...' observation. With ``actions`` (a function
    of the question and the steps so far returning well-formed actions, e.g. :func:`arithmetic_actions`) the model
    writes a thought of at most ``thought_tokens`` tokens (its first line), then *chooses* the action with the highest
    log P(action | prompt, scratchpad, thought) among them (``normalize`` as in :func:`rl4lm.lm.scoring.score_options`;
    per token by default, since a sum favours the shortest actions): a policy over a finite action set. The program runs every
    tool call (:func:`take_action`) and appends the observation; it never answers for the model.
    """
    tools_by_name = _check_loop_arguments(question, tools, max_steps, normalize)
    prompt = react_prompt(tokenizer, question, list(tools_by_name.values()), examples)
    transcript = AgentTranscript(question)
    for _ in range(max_steps):
        context = prompt + scratchpad(transcript.steps) + "Thought:"
        candidates = probabilities = None
        if actions is None:
            thought, action = parse_step(greedy_continuation(model, tokenizer, context, max_new_tokens))
        else:
            thought = parse_step(greedy_continuation(model, tokenizer, context, thought_tokens))[0].split("\n", 1)[0].strip()
            candidates = actions(question, transcript.steps)
            if not candidates:
                raise ValueError("actions returned no action to choose from; it must return at least one.")
            scores = shared_context_scores(model, tokenizer, context + (f" {thought}" if thought else "") + "\nAction:",
                                           candidates, normalize)
            probabilities = scores.softmax(dim=-1).tolist()  # the model's distribution restricted to the action set
            action = candidates[int(scores.argmax())]
        step = take_action(action, tools_by_name)
        step.thought, step.candidates, step.probabilities = thought, candidates, probabilities
        transcript.steps.append(step)
        if step.tool == FINISH:
            transcript.answer, transcript.stopped = step.argument, "finish"
            break
    return transcript


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def arithmetic_actions(question: str, steps: Sequence[AgentStep], operators: str = "+-*/") -> list[str]:
    """Every well-formed action on the numbers at hand: the action set of a constrained ReAct agent (Yao et al., 2023).

    The numbers are those of the question and the latest numeric observation, each once, in order of appearance.
    Returns ``calculate[a op b]`` for every pair and operator (both orders for - and /, one for + and *), then
    ``finish[n]`` for every number. The model chooses among them; most of them are wrong for the question.
    """
    if not operators or any(op not in "+-*/" for op in operators):
        raise ValueError(f"operators should be a non-empty string of + - * /, got {operators!r}.")
    numbers: list[str] = []
    observed = [s.observation.strip() for s in steps if s.tool not in (None, FINISH) and _NUMBER.fullmatch(s.observation.strip())]
    for found in _NUMBER.findall(question) + observed[-1:]:
        if found not in numbers:
            numbers.append(found)
    calls = [f"calculate[{a} {op} {b}]" for op in operators for i, a in enumerate(numbers) for j, b in enumerate(numbers)
             if i != j and (i < j or op in "-/")]
    return calls + [f"{FINISH}[{n}]" for n in numbers]


def answer_matches(answer: str | None, expected: float, tolerance: float = 1e-6) -> bool:
    """Whether the first number in a final answer equals the expected one (within ``tolerance``), as in exact-match scoring."""
    if answer is None:
        return False
    found = _NUMBER.search(answer.replace(",", ""))
    return found is not None and abs(float(found.group()) - expected) <= tolerance


# ---------------------------------------------------------------------------------------------------------------------
# Zero-shot classification by log-probability
# ---------------------------------------------------------------------------------------------------------------------
CONTENT_FREE_INPUTS = ("N/A", "", "[MASK]")  # Zhao et al. (2021)'s content-free inputs


def _check_template(template: str) -> str:
    """``template`` itself, or a one-sentence ValueError when it has no {text} slot or ends with a space."""
    if not isinstance(template, str) or "{text}" not in template:
        raise ValueError("template should be a string with a {text} slot, e.g. 'review : {text} sentiment :'.")
    if template.endswith(" "):
        raise ValueError("template ends with a space; write it without one, a space is put before every verbaliser.")
    return template


@torch.no_grad()
def zero_shot_label_scores(model, tokenizer, texts: Sequence[str], template: str, verbalizers: Sequence[str],
                           batch_size: int = 64) -> torch.Tensor:
    """log P(v(c) | template(x)) for every text x and label c: a zero-shot classifier (Radford et al., 2019; Schick and Schütze, 2021).

    Returns (n_texts, n_labels), float32 on the CPU; the argmax over labels is the prediction, eq. (lm-classifier) of
    Session 12. ``template`` has a ``{text}`` slot; each verbaliser is scored as ``" " + v`` after it, tokenized on its
    own as in :func:`rl4lm.lm.scoring.option_logprobs` (a multi-token verbaliser's log-probabilities are summed). The
    scores are those of :func:`rl4lm.analysis.probes.continuation_logprobs` on the (text, label) rows: one-token
    verbalisers are read off one forward pass per text, longer ones score every row in full. A context too long for the
    model's positions loses its beginning. ``batch_size`` sequences go through the model at a time; lower it for a large
    vocabulary on a small GPU.
    """
    _check_template(template)
    if isinstance(texts, str) or not len(texts) or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts should be a non-empty list of strings to classify.")
    if isinstance(verbalizers, str) or len(verbalizers) < 2 or not all(isinstance(v, str) and v.strip() for v in verbalizers):
        raise ValueError("verbalizers should be a list of at least two non-empty label words, e.g. ['negative', 'positive'].")
    contexts = [template.replace("{text}", text) for text in texts for _ in verbalizers]  # text-major: row = text * n_labels + label
    scores = continuation_logprobs(model, tokenizer, contexts, list(verbalizers) * len(texts), batch_size=batch_size)
    return scores.view(len(texts), len(verbalizers))  # (n_texts, n_labels)


def contextual_calibration(label_logprobs: torch.Tensor, content_free_logprobs: torch.Tensor) -> torch.Tensor:
    """Calibrated scores log p(c | x) - log p_cf(c): contextual calibration (Zhao et al., 2021, "Calibrate before use").

    label_logprobs: (n, n_labels) from :func:`zero_shot_label_scores`; content_free_logprobs: (m, n_labels), the same
    template filled with m content-free inputs (e.g. :data:`CONTENT_FREE_INPUTS`). Both are normalised over the labels;
    p_cf is the mean of the m content-free distributions. Each row p(. | x) is divided by p_cf (the diagonal
    W = diag(p_cf)^-1, b = 0 of the paper) and renormalised: returns (n, n_labels) calibrated log-probabilities, whose
    argmax is the calibrated prediction.
    """
    if label_logprobs.dim() != 2 or content_free_logprobs.dim() != 2 or label_logprobs.shape[1] != content_free_logprobs.shape[1]:
        raise ValueError(f"label_logprobs (n, labels) and content_free_logprobs (m, labels) should have the same number of labels, "
                         f"got shapes {tuple(label_logprobs.shape)} and {tuple(content_free_logprobs.shape)}.")
    p_cf = content_free_logprobs.log_softmax(dim=-1).exp().mean(dim=0)  # (labels,)
    return (label_logprobs.log_softmax(dim=-1) - p_cf.log()).log_softmax(dim=-1)  # log of p(c|x) / p_cf(c), renormalised


# ---------------------------------------------------------------------------------------------------------------------
# Survey-style questions: lettered options in both orders
# ---------------------------------------------------------------------------------------------------------------------
LETTERS = "ABCDEFGH"


def lettered_question(question: str, options: Sequence[str]) -> str:
    """A multiple-choice survey item as text: the question, then 'A. option' lines (Santurkar et al., 2023's format)."""
    if isinstance(options, str) or not 2 <= len(options) <= len(LETTERS):
        raise ValueError(f"options should be a list of 2 to {len(LETTERS)} answer texts.")
    return question + "\n" + "\n".join(f"{letter}. {option}" for letter, option in zip(LETTERS, options))


@torch.no_grad()
def letter_probabilities(model, tokenizer, question: str, options: Sequence[str]) -> torch.Tensor:
    """P(letter | survey item) over the options' letters, renormalised over them (Santurkar et al., 2023); (n_options,).

    The item (:func:`lettered_question`, then 'Answer with the letter of one option.') goes through
    :func:`assistant_prompt` with the reply prefilled with 'Answer:', and each letter is scored as ' A', ' B', ...
    """
    user = lettered_question(question, options) + "\nAnswer with the letter of one option."
    context = assistant_prompt(tokenizer, user, prefill="Answer:")
    return score_options(model, tokenizer, context, list(LETTERS[:len(options)])).softmax(dim=-1)


def answer_order_effect(model, tokenizer, question: str, options: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """P(option) with the options listed as given and listed in reverse, both (n_options,) and indexed by option.

    A respondent that answers the content gives the same two vectors; one that answers the position gives the first
    vector reversed (Dominguez-Olmedo et al., 2024 find such ordering and labelling biases in LLMs' survey answers).
    """
    forward = letter_probabilities(model, tokenizer, question, options)
    backward = letter_probabilities(model, tokenizer, question, list(options)[::-1]).flip(0)
    return forward, backward
